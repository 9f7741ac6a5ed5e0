"""The neutral format: a folder with ``model.safetensors`` (canonical names, PyTorch layout,
float32) and ``config.json`` (format_version, architecture, variant, num_classes, aux_logits,
transform_input). Reading never executes code; writing is all-or-nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .checkpoint import FORMAT_VERSION, Checkpoint, check_architecture
from .errors import InputFileError, WeightsMismatchError
from .mapping import check_canonical

TENSORS, CONFIG = "model.safetensors", "config.json"
REQUIRED = {"format_version": int, "architecture": str, "num_classes": int, "aux_logits": bool}


def _folder(path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (TENSORS, CONFIG):
        path = path.parent
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise InputFileError(f"{path}: a neutral checkpoint is a folder with {TENSORS} and {CONFIG}")
    return path


def read_config(folder: Path) -> dict:
    path = folder / CONFIG
    if not path.is_file():
        raise InputFileError(f"{path}: missing (a neutral checkpoint needs {CONFIG} beside {TENSORS})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise InputFileError(f"{path}: expected a JSON object, found {type(cfg).__name__}")
    for key, typ in REQUIRED.items():
        if not isinstance(cfg.get(key), typ) or (typ is int and isinstance(cfg.get(key), bool)):
            raise InputFileError(f"{path}: field {key!r} must be {typ.__name__}, found {cfg.get(key)!r}")
    if cfg["format_version"] != FORMAT_VERSION:
        raise InputFileError(f"{path}: format_version {cfg['format_version']} is not supported "
                             f"(this bridge reads version {FORMAT_VERSION})")
    if cfg["num_classes"] < 1:
        raise InputFileError(f"{path}: num_classes must be positive, found {cfg['num_classes']}")
    check_architecture(cfg["architecture"], str(path))
    return cfg


def read(path, architecture=None, allow_nonfinite=False) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = _folder(path)
    cfg = read_config(folder)
    if architecture and architecture != cfg["architecture"]:
        raise WeightsMismatchError(f"{folder / CONFIG}: architecture is {cfg['architecture']!r}, expected {architecture!r}")
    tensor_file = folder / TENSORS
    if not tensor_file.is_file():
        raise InputFileError(f"{tensor_file}: missing")
    try:
        tensors = load_file(str(tensor_file))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise InputFileError(f"{tensor_file}: not a readable safetensors file ({e})") from None
    extra = {k: v for k, v in cfg.items() if k not in REQUIRED and k not in ("variant", "transform_input")}
    ckpt = Checkpoint(cfg["architecture"], tensors, cfg["num_classes"], cfg["aux_logits"],
                      cfg.get("variant", "default"), bool(cfg.get("transform_input", False)), extra)
    check_canonical(tensors, ckpt.expected_shapes(), str(tensor_file), allow_nonfinite)
    return ckpt


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    from safetensors.numpy import save_file

    check_canonical(ckpt.tensors, ckpt.expected_shapes(), f"{path} (before writing)", allow_nonfinite=True)
    with atomic_path(path, overwrite, directory=True) as tmp:
        tensors = {k: np.ascontiguousarray(v) for k, v in ckpt.tensors.items()}
        save_file(tensors, str(tmp / TENSORS), metadata={"format": "pt", "architecture": ckpt.architecture})
        (tmp / CONFIG).write_text(json.dumps(ckpt.config(), indent=2) + "\n", encoding="utf-8")
    return Path(path)
