"""ONNX export of our models, checked with onnxruntime before it is kept."""
from .export import export_onnx

__all__ = ["export_onnx"]
