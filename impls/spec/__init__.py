"""Architectures written down once, framework-free. Frameworks build from ``model_spec``."""
from .model import ModelSpec
from .registry import ARCHITECTURES, model_spec, variants

__all__ = ["ARCHITECTURES", "ModelSpec", "model_spec", "variants"]
