"""Hostile and broken inputs: every bad file gets a clear error, nothing is written, no code runs.

The corpus is generated here from one seeded GoogLeNet checkpoint (no binaries are checked in).
Each case goes through the library in-process (``weights_bridge.convert``) and must raise the
documented exception type whose message names the file and the tensor or layer, with expected
versus found; the folder must be unchanged afterwards (hidden temporaries included). Cases that
need Keras run in one subprocess (the pytest process never imports keras or tensorflow), and a
handful go through the CLI to check the exit code and the one-line message.
docs/hostile_inputs.md lists every case and what the user sees.
"""
from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import weights_bridge as wb
from weights_bridge import neutral
from conformance.conftest import REPO, run_cli

ARCH = "googlenet"


# ----------------------------------------------------------------------------- shared material

class Material:
    """The valid inputs every bad one is derived from, made once per module."""

    def __init__(self, root: Path, pth: Path):
        self.root, self.pth = root, pth
        self.sd = torch.load(pth, weights_only=True)
        self.neutral = root / "valid.neutral"
        wb.convert(pth, self.neutral, ARCH)
        self.raw = (self.neutral / neutral.TENSORS).read_bytes()
        self.header_len = struct.unpack("<Q", self.raw[:8])[0]
        self.header = json.loads(self.raw[8:8 + self.header_len])
        self.data = self.raw[8 + self.header_len:]
        self.config = json.loads((self.neutral / neutral.CONFIG).read_text())
        self.tensors = {k: v for k, v in wb.read(self.neutral).tensors.items()}
        self.msgpack = root / "valid.msgpack"
        wb.convert(pth, self.msgpack, ARCH)

    def safetensors(self, header: dict, data: bytes = None) -> bytes:
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + (self.data if data is None else data)

    def header_with(self, name, **changes) -> dict:
        h = json.loads(json.dumps(self.header))
        h[name].update(changes)
        return h


@pytest.fixture(scope="module")
def material(googlenet_pth, tmp_path_factory):
    return Material(tmp_path_factory.mktemp("material"), googlenet_pth)


def _neutral(d: Path, m: Material, tensors: bytes = None, config=None, *, arrays=None, torch_arrays=None):
    """A neutral folder in ``d``: the valid one with its tensor bytes and/or config replaced."""
    src = d / "ckpt"
    src.mkdir()
    if arrays is not None:
        from safetensors.numpy import save_file

        save_file(arrays, str(src / neutral.TENSORS))
    elif torch_arrays is not None:
        from safetensors.torch import save_file

        save_file(torch_arrays, str(src / neutral.TENSORS))
    elif tensors is not False:
        (src / neutral.TENSORS).write_bytes(m.raw if tensors is None else tensors)
    if config is not False:
        text = config if isinstance(config, str) else json.dumps(m.config if config is None else config)
        (src / neutral.CONFIG).write_text(text)
    return src


def _with(m: Material, **changes):
    arrays = dict(m.tensors)
    for k, v in changes.items():
        arrays[k.replace("__", ".")] = v
    return {k: v for k, v in arrays.items() if v is not None}


def _nan(m, key, value):
    a = m.tensors[key].copy()
    a.flat[3] = value
    return a


def _torch(d: Path, obj, name="ckpt.pth"):
    torch.save(obj, d / name)
    return d / name


def _flax(d: Path, m: Material, edit, name="ckpt.msgpack"):
    from flax import serialization

    tree = serialization.msgpack_restore(m.msgpack.read_bytes())
    edit(tree)
    (d / name).write_bytes(serialization.msgpack_serialize(tree))
    return d / name


def _other_model_flax(d: Path):
    """A valid googlenet_paper Flax state (zeros), to be read as googlenet."""
    from weights_bridge import flax_io
    from weights_bridge.checkpoint import Checkpoint

    ckpt = Checkpoint("googlenet_paper", {})
    ckpt.tensors = {k: np.zeros(s, np.float32) for k, s in ckpt.expected_shapes().items()}
    flax_io.write(ckpt, d / "paper.msgpack")
    return d / "paper.msgpack"


class _System:
    """A pickle whose loading would run a shell command creating the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _keras_archive(d: Path, lambda_layer: bool):
    layers = [{"class_name": "InputLayer", "config": {"name": "input"}},
              {"class_name": "Lambda" if lambda_layer else "Dense",
               "config": {"name": "evil" if lambda_layer else "dense",
                          "function": {"class_name": "__lambda__", "config": {"code": "payload"}}}}]
    path = d / ("lambda.keras" if lambda_layer else "plain.keras")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": layers}}))
        z.writestr("model.weights.h5", b"")
    return path


FC = "fc.bias"
E = wb.InputFileError, wb.UnsafeInputError, wb.WeightsMismatchError, wb.OutputError

# name -> builder(d, material) returning (src, expected exception, needles in the message[, convert kwargs]).
# The message must also name the source path. The output is always d / "out.msgpack".
CORPUS = {
    # -- safetensors (neutral folder) ---------------------------------------------------------
    "safetensors: empty file": lambda d, m: (_neutral(d, m, b""), wb.InputFileError, ["truncated", "8-byte"]),
    "safetensors: truncated in the length field": lambda d, m: (
        _neutral(d, m, m.raw[:5]), wb.InputFileError, ["truncated", "5-byte file"]),
    "safetensors: truncated in the header": lambda d, m: (
        _neutral(d, m, m.raw[:8 + m.header_len // 2]), wb.InputFileError, ["header length field says"]),
    "safetensors: truncated mid-tensor": lambda d, m: (
        _neutral(d, m, m.raw[:len(m.raw) // 2]), wb.InputFileError, ["tensor '", "out of range", "data section is"]),
    "safetensors: header length larger than the file": lambda d, m: (
        _neutral(d, m, struct.pack("<Q", 10 * len(m.raw)) + m.raw[8:]), wb.InputFileError,
        [f"says {10 * len(m.raw)} bytes", "only"]),
    "safetensors: header is not JSON": lambda d, m: (
        _neutral(d, m, struct.pack("<Q", 9) + b"{not json" + m.data), wb.InputFileError, ["not valid JSON"]),
    "safetensors: header is not UTF-8": lambda d, m: (
        _neutral(d, m, struct.pack("<Q", 4) + b"\xff\xfe\x00{" + m.data), wb.InputFileError, ["not valid JSON"]),
    "safetensors: header is a JSON list": lambda d, m: (
        _neutral(d, m, m.safetensors([1, 2])), wb.InputFileError, ["JSON object", "found list"]),
    "safetensors: tensor entry without data_offsets": lambda d, m: (
        _neutral(d, m, m.safetensors({**m.header, FC: {"dtype": "F32", "shape": [1000]}})), wb.InputFileError,
        [f"tensor '{FC}'", "expected {dtype", "found"]),
    "safetensors: negative shape": lambda d, m: (
        _neutral(d, m, m.safetensors(m.header_with(FC, shape=[-1000]))), wb.InputFileError, [f"tensor '{FC}'"]),
    "safetensors: offsets overlapping": lambda d, m: (
        _neutral(d, m, m.safetensors(_overlap(m))), wb.InputFileError, ["'fc.weight'", "overlap tensor 'fc.bias'"]),
    "safetensors: offsets out of range": lambda d, m: (
        _neutral(d, m, m.safetensors(m.header_with(FC, data_offsets=[10 ** 12, 10 ** 12 + 4000]))),
        wb.InputFileError, [f"tensor '{FC}'", "out of range", f"{len(m.data)} bytes"]),
    "safetensors: offsets disagree with shape": lambda d, m: (
        _neutral(d, m, m.safetensors(m.header_with(FC, shape=[999]))), wb.InputFileError,
        [f"tensor '{FC}'", "span 4000 bytes, expected 3996"]),
    "safetensors: trailing bytes": lambda d, m: (
        _neutral(d, m, m.raw + b"\0" * 16), wb.InputFileError, ["trailing bytes", f"{len(m.data) + 16} bytes"]),
    "safetensors: int8 tensor": lambda d, m: (
        _neutral(d, m, arrays=_with(m, fc__bias=np.zeros(1000, np.int8))), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype I8", "expected F32"]),
    "safetensors: float64 tensor": lambda d, m: (
        _neutral(d, m, arrays=_with(m, fc__bias=np.zeros(1000, np.float64))), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype F64", "expected F32"]),
    "safetensors: bfloat16 tensor": lambda d, m: (
        _neutral(d, m, torch_arrays={k: torch.from_numpy(v) if k != FC else torch.zeros(1000, dtype=torch.bfloat16)
                                     for k, v in m.tensors.items()}), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype BF16", "expected F32"]),
    "safetensors: wrong shape": lambda d, m: (
        _neutral(d, m, arrays=_with(m, fc__bias=np.zeros(999, np.float32))), wb.WeightsMismatchError,
        [f"'{FC}'", "(999,)", "expected (1000,)"]),
    "safetensors: missing tensor": lambda d, m: (
        _neutral(d, m, arrays=_with(m, conv1__bn__running_var=None)), wb.WeightsMismatchError,
        ["missing tensor 'conv1.bn.running_var'", "(64,)"]),
    "safetensors: unexpected tensor": lambda d, m: (
        _neutral(d, m, arrays=_with(m, lambda__weight=np.zeros(3, np.float32))), wb.WeightsMismatchError,
        ["unexpected tensor 'lambda.weight'", "(3,)"]),
    "safetensors: NaN": lambda d, m: (
        _neutral(d, m, arrays=_with(m, fc__bias=_nan(m, FC, np.nan))), wb.WeightsMismatchError,
        [f"'{FC}'", "NaN or Inf", "--allow-nonfinite"]),
    "safetensors: Inf": lambda d, m: (
        _neutral(d, m, arrays=_with(m, conv1__conv__weight=_nan(m, "conv1.conv.weight", -np.inf))),
        wb.WeightsMismatchError, ["'conv1.conv.weight'", "NaN or Inf"]),
    "safetensors: file missing beside config.json": lambda d, m: (
        _neutral(d, m, False), wb.InputFileError, ["model.safetensors", "missing", "found nothing"]),
    # -- config.json --------------------------------------------------------------------------
    "config.json: missing": lambda d, m: (
        _neutral(d, m, config=False), wb.InputFileError, ["config.json", "missing", "found nothing"]),
    "config.json: a folder": lambda d, m: (
        _mkdir(_neutral(d, m, config=False) / "config.json").parent, wb.InputFileError, ["config.json", "a folder"]),
    "config.json: malformed JSON": lambda d, m: (
        _neutral(d, m, config='{"format_version": 1,'), wb.InputFileError, ["config.json", "not valid JSON"]),
    "config.json: not an object": lambda d, m: (
        _neutral(d, m, config="[1, 2]"), wb.InputFileError, ["config.json", "expected a JSON object", "list"]),
    "config.json: deeply nested": lambda d, m: (
        _neutral(d, m, config="[" * 100000 + "]" * 100000), wb.InputFileError, ["config.json", "not valid JSON"]),
    "config.json: wrong architecture": lambda d, m: (
        _neutral(d, m, config={**m.config, "architecture": "googlenet_paper"}), wb.WeightsMismatchError,
        ["config.json", "architecture is 'googlenet_paper'", "expected 'googlenet'"]),
    "config.json: unknown architecture": lambda d, m: (
        _neutral(d, m, config={**m.config, "architecture": "resnet50"}), wb.WeightsMismatchError,
        ["config.json", "unknown architecture 'resnet50'", "googlenet"]),
    "config.json: num_classes not positive": lambda d, m: (
        _neutral(d, m, config={**m.config, "num_classes": 0}), wb.InputFileError,
        ["config.json", "num_classes must be between 1 and", "found 0"]),
    "config.json: num_classes a string": lambda d, m: (
        _neutral(d, m, config={**m.config, "num_classes": "1000"}), wb.InputFileError,
        ["config.json", "'num_classes' must be int", "found '1000'"]),
    "config.json: num_classes disagrees with tensors": lambda d, m: (
        _neutral(d, m, config={**m.config, "num_classes": 10}), wb.WeightsMismatchError,
        ["'fc.weight'", "(1000, 1024)", "expected (10, 1024)"]),
    "config.json: aux_logits disagrees with tensors": lambda d, m: (
        _neutral(d, m, config={**m.config, "aux_logits": False}), wb.WeightsMismatchError,
        ["unexpected tensor 'aux1."]),
    "config.json: unknown format_version": lambda d, m: (
        _neutral(d, m, config={**m.config, "format_version": 2}), wb.InputFileError,
        ["config.json", "format_version 2 is not supported", "version 1"]),
    "config.json: format_version missing": lambda d, m: (
        _neutral(d, m, config={k: v for k, v in m.config.items() if k != "format_version"}), wb.InputFileError,
        ["'format_version' must be int", "found None"]),
    "config.json: unknown variant": lambda d, m: (
        _neutral(d, m, config={**m.config, "variant": "tf"}), wb.WeightsMismatchError,
        ["config.json", "no variant 'tf'", "only 'default'"]),
    "config.json: transform_input not a bool": lambda d, m: (
        _neutral(d, m, config={**m.config, "transform_input": "yes"}), wb.InputFileError,
        ["'transform_input' must be bool", "found 'yes'"]),
    # -- PyTorch .pth ---------------------------------------------------------------------------
    "pth: empty file": lambda d, m: (_write(d / "e.pth", b""), wb.InputFileError, ["not a readable PyTorch file"]),
    "pth: truncated archive": lambda d, m: (
        _write(d / "t.pth", m.pth.read_bytes()[: m.pth.stat().st_size // 2]), wb.InputFileError,
        ["not a readable PyTorch file"]),
    "pth: random bytes": lambda d, m: (
        _write(d / "r.pth", np.random.default_rng(0).bytes(4096)), wb.InputFileError, ["not a readable PyTorch file"]),
    "pth: a Flax msgpack renamed": lambda d, m: (
        _write(d / "f.pth", m.msgpack.read_bytes()), wb.InputFileError, ["not a readable PyTorch file"]),
    "pth: pickle payload (os.system)": lambda d, m: (
        _write(d / "evil.pth", pickle.dumps({"fc.bias": _System(d / "PWNED")}, protocol=2)), wb.UnsafeInputError,
        ["refused to unpickle", "GLOBAL", "system"]),
    "pth: full pickled nn.Module (zip)": lambda d, m: (
        _torch(d, torch.nn.Sequential(torch.nn.Linear(2, 2))), wb.UnsafeInputError,
        ["refused to unpickle", "state_dict()", "torch.nn"]),
    "pth: int8 tensor": lambda d, m: (
        _torch(d, {**m.sd, FC: torch.zeros(1000, dtype=torch.int8)}), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype int8", "expected float32"]),
    "pth: bfloat16 tensor": lambda d, m: (
        _torch(d, {**m.sd, FC: torch.zeros(1000, dtype=torch.bfloat16)}), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype bfloat16", "expected float32"]),
    "pth: Inf": lambda d, m: (
        _torch(d, {**m.sd, FC: torch.full((1000,), float("inf"))}), wb.WeightsMismatchError,
        [f"'{FC}'", "NaN or Inf"]),
    "pth: a list, not a state_dict": lambda d, m: (
        _torch(d, [torch.zeros(2)]), wb.InputFileError, ["expected a state_dict", "found list"]),
    "pth: entry not a tensor": lambda d, m: (
        _torch(d, {**m.sd, FC: 3}), wb.InputFileError, [f"'{FC}'", "is a int, not a tensor"]),
    "pth: non-string key": lambda d, m: (
        _torch(d, {**m.sd, 7: torch.zeros(2)}), wb.InputFileError, ["key 7", "expected a str"]),
    "pth: sparse tensor": lambda d, m: (
        _torch(d, {**m.sd, FC: torch.zeros(1000).to_sparse()}), wb.InputFileError,
        [f"'{FC}'", "sparse", "expected a dense CPU tensor"]),
    "pth: same tensor with and without module.": lambda d, m: (
        _torch(d, {**m.sd, "module." + FC: m.sd[FC]}), wb.WeightsMismatchError, [f"'{FC}'", "twice"]),
    "pth: a folder named .pth": lambda d, m: (_mkdir(d / "dir.pth"), wb.InputFileError, ["is a folder, not a file"]),
    "pth: does not exist": lambda d, m: (d / "nope.pth", wb.InputFileError, ["no such file"]),
    # -- Flax .msgpack --------------------------------------------------------------------------
    "msgpack: empty file": lambda d, m: (
        _write(d / "e.msgpack", b""), wb.InputFileError, ["not a readable Flax msgpack state"]),
    "msgpack: truncated": lambda d, m: (
        _write(d / "t.msgpack", m.msgpack.read_bytes()[:100000]), wb.InputFileError,
        ["not a readable Flax msgpack state"]),
    "msgpack: a .pth renamed": lambda d, m: (
        _write(d / "p.msgpack", m.pth.read_bytes()), wb.InputFileError, ["not a readable Flax msgpack state"]),
    "msgpack: a list, not a state": lambda d, m: (
        _write(d / "l.msgpack", b"\x92\x01\x02"), wb.InputFileError, ["expected a nested dict", "found list"]),
    "msgpack: another model (googlenet_paper as googlenet)": lambda d, m: (
        _other_model_flax(d), wb.WeightsMismatchError, ["tensor", "expected"]),
    "msgpack: float64 kernel": lambda d, m: (
        _flax(d, m, lambda t: t["fc"].update(bias=t["fc"]["bias"].astype(np.float64))), wb.WeightsMismatchError,
        [f"'{FC}'", "float64", "expected float32"]),
    "msgpack: wrong shape": lambda d, m: (
        _flax(d, m, lambda t: t["fc"].update(bias=np.zeros(7, np.float32))), wb.WeightsMismatchError,
        [f"'{FC}'", "(7,)", "expected (1000,)"]),
    "msgpack: missing variable": lambda d, m: (
        _flax(d, m, lambda t: t["fc"].pop("bias")), wb.WeightsMismatchError, [f"missing tensor '{FC}'"]),
    "msgpack: unexpected variable": lambda d, m: (
        _flax(d, m, lambda t: t.update(evil={"kernel": np.zeros(3, np.float32)})), wb.WeightsMismatchError,
        ["unexpected tensor 'evil.weight'", "(3,)"]),
    "msgpack: variable no layout rule matches": lambda d, m: (
        _flax(d, m, lambda t: t["fc"].update(blob=np.zeros(3, np.float32))), wb.WeightsMismatchError,
        ["'fc.blob'", "matched 0 layout rules (expected exactly 1)"]),
    "msgpack: leaf not an array": lambda d, m: (
        _flax(d, m, lambda t: t["fc"].update(bias="code")), wb.InputFileError, ["'fc.bias'", "not an array"]),
    # -- Keras files refused before Keras is imported -------------------------------------------
    ".keras archive with a Lambda layer": lambda d, m: (
        _keras_archive(d, True), wb.UnsafeInputError, ["Lambda layer 'evil'", "expected none", ".weights.h5"]),
    ".keras archive without code": lambda d, m: (
        _keras_archive(d, False), wb.InputFileError, [".keras archive", "expected a .weights.h5"]),
    ".h5 that is not .weights.h5": lambda d, m: (
        _write(d / "legacy.h5", b"\x89HDF\r\n"), wb.InputFileError, ["must end in .weights.h5"]),
    ".weights.h5: empty file": lambda d, m: (
        _write(d / "e.weights.h5", b""), wb.InputFileError, ["not a readable HDF5 file"]),
    ".weights.h5: not HDF5": lambda d, m: (
        _write(d / "x.weights.h5", m.pth.read_bytes()[:4096]), wb.InputFileError, ["not a readable HDF5 file"]),
    # -- paths ----------------------------------------------------------------------------------
    "neutral: path does not exist": lambda d, m: (d / "missing.neutral", wb.InputFileError, ["no such file or folder"]),
    "neutral: a plain file given as the folder": lambda d, m: (
        _write(d / "plain", b"x"), wb.InputFileError, ["a neutral checkpoint is a folder"]),
    "msgpack: a folder named .msgpack": lambda d, m: (
        _mkdir(d / "dir.msgpack"), wb.InputFileError, ["is a folder, not a file"]),
}


def _overlap(m: Material):
    """Two tensors claiming the same bytes (fc.bias re-pointed at fc.weight's first 4000 bytes)."""
    begin = m.header["fc.weight"]["data_offsets"][0]
    return m.header_with(FC, data_offsets=[begin, begin + 4000])


def _write(path: Path, data: bytes):
    path.write_bytes(data)
    return path


def _mkdir(path: Path):
    path.mkdir()
    return path


def _listing(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _refused(d: Path, src, error, needles, arch=ARCH, dst=None, **kw):
    dst = dst or d / "out.msgpack"
    before = _listing(d)
    with pytest.raises(wb.BridgeError) as info:
        wb.convert(src, dst, arch, **kw)
    message = str(info.value)
    assert type(info.value) is error, f"{type(info.value).__name__}: {message}"
    assert str(src) in message, message
    for n in needles:
        assert n in message, f"{n!r} not in {message!r}"
    assert "\n" not in message, message
    assert _listing(d) == before, "something was written or left behind"
    return message


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_input_is_refused_clearly(case, material, tmp_path):
    src, error, needles = CORPUS[case](tmp_path, material)
    _refused(tmp_path, src, error, needles)
    assert not (tmp_path / "PWNED").exists(), "a payload ran"


def test_nonfinite_allowed_with_flag(material, tmp_path):
    src = _neutral(tmp_path, material, arrays=_with(material, fc__bias=_nan(material, FC, np.nan)))
    wb.convert(src, tmp_path / "ok.pth", allow_nonfinite=True)
    assert torch.isnan(torch.load(tmp_path / "ok.pth", weights_only=True)[FC]).sum() == 1


def test_corpus_size():
    assert len(CORPUS) + len(KERAS_CASES) + len(OUTPUT_CASES) >= 30


# ----------------------------------------------------------------------------- outputs

def _parent_is_file(d, m):
    _write(d / "file", b"x")
    return d / "file" / "out.pth", ["expected a folder", "found a file"], {}


def _parent_missing(d, m):
    return d / "no" / "out.pth", ["expected a folder", "found nothing"], {}


def _exists(d, m):
    _write(d / "out.pth", b"previous")
    return d / "out.pth", ["already exists", "--overwrite"], {}


def _neutral_exists(d, m):
    _mkdir(d / "out.neutral")
    return d / "out.neutral", ["already exists"], {}


def _dir_over_file_format(d, m):
    _mkdir(d / "out.pth")
    (d / "out.pth" / "keep").write_text("x")
    return d / "out.pth", ["could not be written"], {"overwrite": True}


def _keras_wrong_suffix(d, m):
    return d / "out.h5", ["must end in .weights.h5"], {}


def _not_writable(d, m):
    if os.geteuid() == 0:
        pytest.skip("root writes through permissions; covered by 'folder is a file' instead")
    ro = _mkdir(d / "ro")
    ro.chmod(0o500)
    return ro / "out.pth", ["not writable"], {}


OUTPUT_CASES = {
    "output: already exists (no --overwrite)": (_exists, wb.OutputError),
    "output: neutral folder already exists": (_neutral_exists, wb.OutputError),
    "output: folder does not exist": (_parent_missing, wb.OutputError),
    "output: 'folder' is a regular file": (_parent_is_file, wb.OutputError),
    "output: folder not writable": (_not_writable, wb.OutputError),
    "output: existing folder where a file goes (--overwrite)": (_dir_over_file_format, wb.OutputError),
    "output: Keras name without .weights.h5": (_keras_wrong_suffix, wb.InputFileError),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_bad_output_is_refused_clearly(case, material, tmp_path):
    build, error = OUTPUT_CASES[case]
    dst, needles, kw = build(tmp_path, material)
    before = _listing(tmp_path)
    snapshot = {p: (tmp_path / p).read_bytes() for p in before if (tmp_path / p).is_file()}
    with pytest.raises(wb.BridgeError) as info:
        wb.convert(material.pth, dst, ARCH, **kw)
    message = str(info.value)
    assert type(info.value) is error, f"{type(info.value).__name__}: {message}"
    assert str(dst) in message and all(n in message for n in needles), message
    assert _listing(tmp_path) == before
    assert {p: (tmp_path / p).read_bytes() for p in snapshot} == snapshot


# ----------------------------------------------------------------------------- Keras (one subprocess)

KERAS_SCRIPT = r"""
import json, os, sys
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import weights_bridge as wb
out = {}
for src in sys.argv[1:]:
    d = os.path.dirname(src)
    before = sorted(os.listdir(d))
    try:
        wb.convert(src, os.path.join(d, "out.msgpack"), "googlenet")
        out[src] = {"error": None}
    except wb.BridgeError as e:
        out[src] = {"error": type(e).__name__, "message": str(e)}
    out[src]["unchanged"] = sorted(os.listdir(d)) == before
print("RESULT " + json.dumps(out))
"""


def _h5_edit(edit):
    def run(f):
        import h5py  # noqa: F401  (h5py is safe beside torch; keras/tensorflow are not)

        edit(f)
    return run


def _replace(f, name, array):
    del f[name]
    f.create_dataset(name, data=array)


BN = "layers/conv_block_1/bn/vars/0"
KERAS_CASES = {
    ".weights.h5: missing layer": (lambda f: f.__delitem__("layers/conv_block_1"), "WeightsMismatchError",
                                   ["missing 'layers/conv_block_1/", "expected shape"]),
    ".weights.h5: extra layer": (lambda f: f.create_dataset("layers/lambda/vars/0", data=np.zeros(3, np.float32)),
                                 "WeightsMismatchError", ["unexpected 'layers/lambda/vars/0'", "(3,)"]),
    ".weights.h5: float64 variable": (lambda f: _replace(f, BN, f[BN][...].astype(np.float64)),
                                      "WeightsMismatchError", [f"'{BN}'", "float64", "expected float32"]),
    ".weights.h5: wrong shape": (lambda f: _replace(f, BN, f[BN][...][:-1]), "WeightsMismatchError",
                                 [f"'{BN}'", "(63,)", "expected (64,)"]),
}


@pytest.fixture(scope="module")
def keras_file(material):
    path = material.root / "valid.weights.h5"
    run_cli("convert", material.pth, path, "--arch", ARCH, "--quiet", check=True)
    return path


def test_keras_weight_files_with_wrong_layers(keras_file, tmp_path):
    import shutil

    import h5py

    srcs = {}
    for i, (case, (edit, _, _)) in enumerate(KERAS_CASES.items()):
        d = _mkdir(tmp_path / f"case{i}")
        srcs[case] = d / "bad.weights.h5"
        shutil.copy(keras_file, srcs[case])
        with h5py.File(srcs[case], "r+") as f:
            edit(f)
    from conformance.matrix import _jax_cache_env

    proc = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, *map(str, srcs.values())], cwd=REPO,
                          env={**os.environ, **_jax_cache_env()}, capture_output=True, text=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    results = json.loads(line[0][len("RESULT "):])
    for case, (_, error, needles) in KERAS_CASES.items():
        r = results[str(srcs[case])]
        assert r["error"] == error, (case, r)
        assert str(srcs[case]) in r["message"] and all(n in r["message"] for n in needles), (case, r["message"])
        assert "\n" not in r["message"] and r["unchanged"], (case, r)


# ----------------------------------------------------------------------------- the CLI

def _one_line(proc, code, *needles):
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("inception-bridge: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_cli_exit_codes_and_one_line(material, tmp_path):
    marker = tmp_path / "PWNED"
    evil = _write(tmp_path / "evil.pth", pickle.dumps({FC: _System(marker)}, protocol=2))
    corrupt = _neutral(_mkdir(tmp_path / "c"), material, material.raw[:len(material.raw) // 3])
    bf16 = _neutral(_mkdir(tmp_path / "b"), material,
                    torch_arrays={k: torch.from_numpy(v).to(torch.bfloat16) for k, v in material.tensors.items()})
    lam = _keras_archive(tmp_path, True)
    exists = _write(tmp_path / "exists.pth", b"previous")
    before = _listing(tmp_path)
    out = tmp_path / "out.pth"
    q = ("--arch", ARCH, "--quiet")
    _one_line(run_cli("convert", evil, out, *q), 4, str(evil), "refused to unpickle")
    _one_line(run_cli("convert", corrupt, out, "--quiet"), 3, str(corrupt), "out of range")
    _one_line(run_cli("convert", bf16, out, "--quiet"), 5, "dtype BF16, expected F32")
    _one_line(run_cli("convert", lam, out, *q), 4, "Lambda layer 'evil'")
    _one_line(run_cli("convert", material.pth, exists, *q), 6, "already exists")
    _one_line(run_cli("convert", material.pth, out, "--quiet"), 2, "--arch")
    assert not marker.exists(), "the pickle payload ran"
    assert _listing(tmp_path) == before and (tmp_path / "exists.pth").read_bytes() == b"previous"


# ----------------------------------------------------------------------------- fuzzing

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_small_ints = st.integers(min_value=-2, max_value=2 ** 64 + 1)
_entries = st.fixed_dictionaries({}, optional={
    "dtype": st.sampled_from(["F32", "F64", "BF16", "I8", "U8", "F16", "BOOL", "X", ""]) | st.integers(),
    "shape": st.lists(st.integers(-1, 6) | st.just(2 ** 40), max_size=4) | st.text(max_size=3),
    "data_offsets": st.lists(st.integers(-4, 200) | st.just(2 ** 63), max_size=3) | st.none(),
})


@st.composite
def _safetensors_bytes(draw):
    kind = draw(st.sampled_from(["random", "structured", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    header = draw(st.dictionaries(st.sampled_from(["fc.bias", "fc.weight", "__metadata__", "x", ""]),
                                  _entries | st.integers() | st.text(max_size=5) | st.none(), max_size=4))
    text = json.dumps(header).encode()
    n = draw(st.sampled_from([len(text), len(text) + 1, max(len(text) - 1, 0), 2 ** 64 - 1, 0]))
    data = draw(st.binary(max_size=200))
    raw = bytearray(struct.pack("<Q", n) + text + data)
    if kind == "mutated" and raw:
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 255))
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


@pytest.fixture(scope="module")
def fuzz_dir(material, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz") / "ckpt"
    d.mkdir()
    (d / neutral.CONFIG).write_text(json.dumps(material.config))
    (d / neutral.TENSORS).write_bytes(b"")
    return d


def test_fuzz_safetensors_reader(fuzz_dir):
    @FUZZ
    @given(_safetensors_bytes())
    def check(raw):
        (fuzz_dir / neutral.TENSORS).write_bytes(raw)
        try:
            neutral.read(fuzz_dir)
        except wb.BridgeError as e:
            assert str(fuzz_dir) in str(e)

    check()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                     max_leaves=8)
_config_values = {"format_version": st.sampled_from([1, 0, 2, True, "1", None]) | _json,
                  "architecture": st.sampled_from(["googlenet", "googlenet_paper", "inception_v3", "", "x"]) | _json,
                  "num_classes": st.sampled_from([1, 2, 1000, 0, -1, 10 ** 30, 1.5, True]) | _json,
                  "aux_logits": st.booleans() | _json,
                  "transform_input": st.booleans() | _json,
                  "variant": st.text(max_size=5) | _json}


@st.composite
def _config_text(draw):
    kind = draw(st.sampled_from(["random", "json", "config"]))
    if kind == "random":
        return draw(st.text(max_size=200))
    if kind == "json":
        return json.dumps(draw(_json))
    keys = draw(st.sets(st.sampled_from(list(_config_values)), min_size=3))
    cfg = {k: draw(_config_values[k]) for k in keys}
    return json.dumps(cfg, allow_nan=True)


def test_fuzz_config_reader(material, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzcfg") / "ckpt"
    d.mkdir()
    (d / neutral.TENSORS).write_bytes(material.safetensors({}, b""))  # valid, but holds no tensor

    @FUZZ
    @given(_config_text())
    def check(text):
        (d / neutral.CONFIG).write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            neutral.read(d)
        except wb.BridgeError as e:
            assert str(d) in str(e)
        else:
            raise AssertionError("a checkpoint without tensors was accepted")

    check()


# ----------------------------------------------------------------------------- faults while writing

def _same_weights(path, m: Material):
    got = wb.read(path, architecture=ARCH).tensors
    return got.keys() == m.tensors.keys() and all(np.array_equal(got[k], m.tensors[k]) for k in got)


def test_kill_9_while_writing_leaves_old_or_nothing(material, tmp_path):
    """SIGKILL the CLI at random points of a conversion over an existing output (--overwrite):
    the destination is always absent or a complete, valid checkpoint, never a partial one."""
    import random
    import signal
    import time

    rng = random.Random(0)
    from conformance.matrix import _jax_cache_env

    env = {**os.environ, **_jax_cache_env()}
    killed_while_writing = 0
    for i, name in enumerate(["out.pth"] * 8 + ["out.neutral"] * 4):
        dst = tmp_path / name
        if not dst.exists():
            wb.convert(material.neutral, dst, ARCH)
        proc = subprocess.Popen([sys.executable, "-m", "weights_bridge.cli", "convert", str(material.neutral),
                                 str(dst), "--overwrite", "--quiet"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        if i % 4 == 3:  # anywhere from start-up to the end
            time.sleep(rng.uniform(0.0, 3.0))
        else:  # once the temporary appears, somewhere in the write or the renames
            while proc.poll() is None and not any(p.name.startswith(f".{name}.") for p in tmp_path.iterdir()):
                if time.monotonic() - start > 60:
                    break
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            killed_while_writing += any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if dst.exists():
            assert _same_weights(dst, material), f"kill {i}: {dst} is not a complete checkpoint"
        else:
            assert name == "out.neutral", f"kill {i}: {dst} vanished"  # between its two renames
        # Only hidden temporaries may remain beside it: never a partial file under the real name.
        assert all(p.name in ("out.pth", "out.neutral") or p.name.startswith(".out.") for p in tmp_path.iterdir())
    assert killed_while_writing >= 4, "too few kills landed while writing; the test lost its point"


FSIZE_SCRIPT = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
from weights_bridge import cli
codes = [cli.main(["convert", sys.argv[1], dst, "--arch", "googlenet", "--overwrite", "--quiet"]) for dst in sys.argv[2:]]
print("CODES", *codes)
"""


def test_write_error_leaves_old_or_nothing(material, tmp_path):
    """A full disk (RLIMIT_FSIZE) while writing each format: exit 6, one line, the previous file intact."""
    previous = _write(tmp_path / "prev.pth", b"previous")
    dsts = [previous, tmp_path / "new.msgpack", tmp_path / "new.neutral"]
    before = _listing(tmp_path)
    from conformance.matrix import _jax_cache_env

    proc = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, str(material.pth), *map(str, dsts)], cwd=REPO,
                          env={**os.environ, **_jax_cache_env()}, capture_output=True, text=True)
    assert proc.stdout.split() == ["CODES", "6", "6", "6"], proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("inception-bridge: error:")]
    assert len(errors) == 3 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert all(str(d) in e and "could not be written" in e for d, e in zip(dsts, errors)), errors
    assert _listing(tmp_path) == before and previous.read_bytes() == b"previous"


@pytest.mark.parametrize("name", ["out.pth", "out.neutral"])
def test_failing_rename_leaves_old_file(material, tmp_path, monkeypatch, name):
    """os.replace failing at the commit step: OutputError, previous output intact, no temporaries."""
    dst = tmp_path / name
    wb.convert(material.neutral, dst, ARCH)
    before = _listing(tmp_path)
    real, calls = os.replace, []

    def failing(a, b):
        calls.append((a, b))
        if Path(b) == dst and (Path(a).name.endswith(".tmp") or Path(a).parent.name.endswith(".tmp")):
            # the rename that would install the new output (a restore of the old one still works)
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(wb.OutputError, match="No space left on device") as info:
        wb.convert(material.neutral, dst, ARCH, overwrite=True)
    monkeypatch.undo()
    assert str(dst) in str(info.value) and calls
    assert _listing(tmp_path) == before and _same_weights(dst, material)
