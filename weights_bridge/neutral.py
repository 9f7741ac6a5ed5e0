"""The neutral format: a folder with ``model.safetensors`` (canonical names, PyTorch layout,
float32) and ``config.json`` (format_version, architecture, variant, num_classes, aux_logits,
transform_input and the checkpoint's facts: input_size, input_space, mean, std, label_offset,
padding_convention). Reading never executes code; writing is all-or-nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from impls.spec.config import FACTS, fact_type_error

from .atomic import atomic_path
from .checkpoint import FORMAT_VERSION, Checkpoint, check_architecture
from .errors import InputFileError, WeightsMismatchError
from .jsonfile import read_json
from .mapping import check_canonical

TENSORS, CONFIG = "model.safetensors", "config.json"
REQUIRED = {"format_version": int, "architecture": str, "num_classes": int, "aux_logits": bool}
OPTIONAL = {"variant": str, "transform_input": bool}
MAX_CONFIG_BYTES = 1 << 20
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
MAX_CLASSES = 1 << 20
RECORDS_VARIANT = True  # the file fixes the checkpoint variant: --variant must agree with it
RECORDS_ARCHITECTURE = True  # config.json names it: --arch is optional, and must agree


def _folder(path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (TENSORS, CONFIG):
        path = path.parent
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise InputFileError(f"{path}: a neutral checkpoint is a folder with {TENSORS} and {CONFIG}")
    return path


def _tensor_file(folder: Path) -> Path:
    path = folder / TENSORS
    if not path.is_file():
        raise InputFileError(f"{path}: missing: expected the tensors file {TENSORS} beside {CONFIG}, found "
                             f"{'a folder' if path.is_dir() else 'nothing'}")
    return path


def read_config(folder: Path) -> dict:
    path = folder / CONFIG
    cfg = read_json(path, f"a neutral checkpoint needs the file {CONFIG} beside {TENSORS}", MAX_CONFIG_BYTES,
                    f"expected a small JSON object (at most {MAX_CONFIG_BYTES})")
    if not isinstance(cfg, dict):
        raise InputFileError(f"{path}: expected a JSON object, found {type(cfg).__name__}")
    for key, typ in {**REQUIRED, **OPTIONAL}.items():
        if key not in cfg and key in OPTIONAL:
            continue
        if not isinstance(cfg.get(key), typ) or (typ is int and isinstance(cfg.get(key), bool)):
            raise InputFileError(f"{path}: field {key!r} must be {typ.__name__}, found {_short(cfg.get(key))}")
    if cfg["format_version"] != FORMAT_VERSION:
        raise InputFileError(f"{path}: format_version {_short(cfg['format_version'])} is not supported "
                             f"(this bridge reads version {FORMAT_VERSION})")
    if not 1 <= cfg["num_classes"] <= MAX_CLASSES:
        raise InputFileError(f"{path}: num_classes must be between 1 and {MAX_CLASSES}, "
                             f"found {_short(cfg['num_classes'])}")
    check_architecture(cfg["architecture"], str(path))
    for name in FACTS:
        expected = fact_type_error(name, cfg[name]) if name in cfg else None
        if expected:
            raise InputFileError(f"{path}: field {name!r} must be {expected}, found {_short(cfg[name])}")
    return cfg


def _short(value, limit=80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_safetensors(path: Path):
    """Validates a safetensors file's header against the file before any tensor is read: the
    length field, JSON object, entries, float32 only, offsets inside the data section, and
    tensors tiling it exactly (no overlap, no gap). Errors name the file, tensor, expected/found.
    Returns (header, byte offset of the data section)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputFileError(f"{path}: truncated: expected an 8-byte header length, found a {size}-byte file")
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise InputFileError(f"{path}: header length field says {n} bytes, but only {size - 8} bytes follow "
                                     f"(truncated or not a safetensors file)")
            if n > MAX_HEADER_BYTES:
                raise InputFileError(f"{path}: header of {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
            text = f.read(n)
    except OSError as e:
        raise InputFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputFileError(f"{path}: header is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict):
        raise InputFileError(f"{path}: header must be a JSON object, found {type(header).__name__}")
    data_size, spans = size - 8 - n, []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise InputFileError(f"{path}: __metadata__ must map strings to strings, found {_short(info)}")
            continue
        dtype, shape, offsets = (info.get(k) for k in ("dtype", "shape", "data_offsets")) if isinstance(info, dict) \
            else (None, None, None)
        if not (isinstance(dtype, str) and _ints(shape) and _ints(offsets) and len(offsets) == 2):
            raise InputFileError(f"{path}: tensor {name!r}: expected {{dtype: str, shape: [int...], "
                                 f"data_offsets: [begin, end]}}, found {_short(info)}")
        if dtype != "F32":
            raise WeightsMismatchError(f"{path}: tensor {name!r} has dtype {dtype if dtype.isalnum() and len(dtype) <= 16 else _short(dtype)}, expected F32 (float32; "
                                       f"the bridge never casts silently)")
        begin, end = offsets
        if not begin <= end <= data_size:
            raise InputFileError(f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] out of range: the data "
                                 f"section is {data_size} bytes (truncated file?)")
        expected = 4 * int(np.prod(shape, dtype=object))
        if end - begin != expected:
            raise InputFileError(f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] span {end - begin} bytes, "
                                 f"expected {expected} for F32 shape {tuple(shape)}")
        spans.append((begin, end, name))
    spans.sort()
    for (_, end0, name0), (begin, end, name) in zip(spans, spans[1:]):
        if begin < end0:
            raise InputFileError(f"{path}: tensor {name!r}: data_offsets [{begin}, {end}] overlap tensor {name0!r} "
                                 f"(which ends at {end0}); expected disjoint spans")
    pos, last = 0, None
    for begin, end, name in spans:
        if begin > pos:
            raise InputFileError(f"{path}: bytes {pos}..{begin} of the data section belong to no tensor "
                                 f"(tensor {name!r} starts at {begin}, expected {pos})")
        pos, last = end, name
    if pos != data_size:
        raise InputFileError(f"{path}: data section is {data_size} bytes, tensors cover {pos} "
                             f"(trailing bytes after tensor {last!r})")
    return header, 8 + n


def _ints(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _load(path: Path, header: dict, start: int) -> dict:
    """The tensors (a header ``check_safetensors`` passed) as float32 views into one buffer
    holding the data section, in ``safetensors.numpy.load_file``'s order (sorted names): one copy
    of the checkpoint in memory, where ``load_file`` maps the file and copies every tensor out
    of the mapping (two)."""
    size = path.stat().st_size - start
    data = bytearray(size)
    with open(path, "rb") as f:
        f.seek(start)
        got = f.readinto(memoryview(data))
    if got != size:
        raise InputFileError(f"{path}: truncated while reading: expected {size} bytes of tensor data, got {got}")
    out = {}
    for name in sorted(k for k in header if k != "__metadata__"):
        begin, end = header[name]["data_offsets"]
        out[name] = np.frombuffer(data, dtype="<f4", count=(end - begin) // 4, offset=begin).reshape(header[name]["shape"])
    return out


def read(path, architecture=None, allow_nonfinite=False) -> Checkpoint:
    folder = _folder(path)
    cfg = read_config(folder)
    if architecture and architecture != cfg["architecture"]:
        raise WeightsMismatchError(f"{folder / CONFIG}: architecture is {cfg['architecture']!r}, expected {architecture!r}")
    extra = {k: v for k, v in cfg.items() if k not in REQUIRED and k not in OPTIONAL and k not in FACTS}
    ckpt = Checkpoint(cfg["architecture"], {}, cfg["num_classes"], cfg["aux_logits"],
                      cfg.get("variant", "default"), cfg.get("transform_input", False), extra=extra)
    try:
        expected = ckpt.expected_shapes()
    except WeightsMismatchError as e:
        raise WeightsMismatchError(f"{folder / CONFIG}: {e}") from None
    if any(name in cfg for name in FACTS):  # a file from before facts were recorded has none: the variant's
        ckpt.facts = {**ckpt.checkpoint_facts(), **{name: cfg[name] for name in FACTS if name in cfg}}
    tensor_file = _tensor_file(folder)
    header, start = check_safetensors(tensor_file)
    try:
        tensors = _load(tensor_file, header, start)
    except (OSError, ValueError) as e:
        raise InputFileError(f"{tensor_file}: not a readable safetensors file ({e})") from None
    check_canonical(tensors, expected, str(tensor_file), allow_nonfinite)
    ckpt.tensors = tensors
    return ckpt


def tensor_shapes(path) -> dict:
    """Each tensor's shape, from the validated safetensors header alone: no tensor data is read,
    so a caller that only sizes a checkpoint (a training step's memory) does not hold it."""
    header, _ = check_safetensors(_tensor_file(_folder(path)))
    return {name: tuple(info["shape"]) for name, info in header.items() if name != "__metadata__"}


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    from safetensors.numpy import save_file

    check_canonical(ckpt.tensors, ckpt.expected_shapes(), f"{path} (before writing)", allow_nonfinite=True)
    with atomic_path(path, overwrite, directory=True) as tmp:
        tensors = {k: np.ascontiguousarray(v) for k, v in ckpt.tensors.items()}
        save_file(tensors, str(tmp / TENSORS), metadata={"format": "pt", "architecture": ckpt.architecture})
        (tmp / CONFIG).write_text(json.dumps(ckpt.config(), indent=2) + "\n", encoding="utf-8")
    return Path(path)
