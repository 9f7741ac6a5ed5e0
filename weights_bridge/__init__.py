"""Lossless weight conversion between the PyTorch, Flax NNX and Keras 3 implementations,
through one neutral format (safetensors + config.json, canonical names, PyTorch layout)."""
from .checkpoint import FORMAT_VERSION, Checkpoint
from .errors import (BridgeError, InputFileError, MissingExtraError, OutputError, ToleranceError,
                     UnsafeInputError, WeightsMismatchError)
from .formats import FORMATS, convert, detect, read, write

__all__ = ["Checkpoint", "FORMAT_VERSION", "BridgeError", "InputFileError", "MissingExtraError", "OutputError",
           "ToleranceError", "UnsafeInputError", "WeightsMismatchError", "FORMATS", "convert", "detect", "read", "write"]
