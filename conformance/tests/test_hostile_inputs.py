"""Hostile and broken inputs: every bad file gets a clear error, nothing is written, no code runs.

The corpus is generated from one seeded GoogLeNet checkpoint (no binaries are checked in; see
conformance/tests/hostile.py). Each case goes through ``weights_bridge.convert`` in-process.
docs/hostile_inputs.md lists every case and what the user sees. Keras weight files and the CLI are
in test_hostile_keras_cli.py, fuzzing and faults while writing in test_hostile_writes.py.
"""
from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch

import weights_bridge as wb
from .hostile import (ARCH, FC, Material, ShellPayload, flax_file, listing, mkdir, neutral_dir, other_model_flax,
                      poisoned, refused, torch_file, with_tensors, write)


# name -> builder(d, material) returning (src, expected exception, needles in the message[, convert kwargs]).
# The message must also name the source path. The output is always d / "out.msgpack".
CORPUS = {
    # -- safetensors (neutral folder) ---------------------------------------------------------
    "safetensors: empty file": lambda d, m: (neutral_dir(d, m, b""), wb.InputFileError, ["truncated", "8-byte"]),
    "safetensors: truncated in the length field": lambda d, m: (
        neutral_dir(d, m, m.raw[:5]), wb.InputFileError, ["truncated", "5-byte file"]),
    "safetensors: truncated in the header": lambda d, m: (
        neutral_dir(d, m, m.raw[:8 + m.header_len // 2]), wb.InputFileError, ["header length field says"]),
    "safetensors: truncated mid-tensor": lambda d, m: (
        neutral_dir(d, m, m.raw[:len(m.raw) // 2]), wb.InputFileError, ["tensor '", "out of range", "data section is"]),
    "safetensors: header length larger than the file": lambda d, m: (
        neutral_dir(d, m, struct.pack("<Q", 10 * len(m.raw)) + m.raw[8:]), wb.InputFileError,
        [f"says {10 * len(m.raw)} bytes", "only"]),
    "safetensors: header is not JSON": lambda d, m: (
        neutral_dir(d, m, struct.pack("<Q", 9) + b"{not json" + m.data), wb.InputFileError, ["not valid JSON"]),
    "safetensors: header is not UTF-8": lambda d, m: (
        neutral_dir(d, m, struct.pack("<Q", 4) + b"\xff\xfe\x00{" + m.data), wb.InputFileError, ["not valid JSON"]),
    "safetensors: header is a JSON list": lambda d, m: (
        neutral_dir(d, m, m.safetensors([1, 2])), wb.InputFileError, ["JSON object", "found list"]),
    "safetensors: tensor entry without data_offsets": lambda d, m: (
        neutral_dir(d, m, m.safetensors({**m.header, FC: {"dtype": "F32", "shape": [1000]}})), wb.InputFileError,
        [f"tensor '{FC}'", "expected {dtype", "found"]),
    "safetensors: negative shape": lambda d, m: (
        neutral_dir(d, m, m.safetensors(m.header_with(FC, shape=[-1000]))), wb.InputFileError, [f"tensor '{FC}'"]),
    "safetensors: offsets overlapping": lambda d, m: (
        neutral_dir(d, m, m.safetensors(_overlap(m))), wb.InputFileError, ["'fc.weight'", "overlap tensor 'fc.bias'"]),
    "safetensors: offsets out of range": lambda d, m: (
        neutral_dir(d, m, m.safetensors(m.header_with(FC, data_offsets=[10 ** 12, 10 ** 12 + 4000]))),
        wb.InputFileError, [f"tensor '{FC}'", "out of range", f"{len(m.data)} bytes"]),
    "safetensors: offsets disagree with shape": lambda d, m: (
        neutral_dir(d, m, m.safetensors(m.header_with(FC, shape=[999]))), wb.InputFileError,
        [f"tensor '{FC}'", "span 4000 bytes, expected 3996"]),
    "safetensors: trailing bytes": lambda d, m: (
        neutral_dir(d, m, m.raw + b"\0" * 16), wb.InputFileError, ["trailing bytes", f"{len(m.data) + 16} bytes"]),
    "safetensors: int8 tensor": lambda d, m: (
        neutral_dir(d, m, arrays=with_tensors(m, fc__bias=np.zeros(1000, np.int8))), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype I8", "expected F32"]),
    "safetensors: float64 tensor": lambda d, m: (
        neutral_dir(d, m, arrays=with_tensors(m, fc__bias=np.zeros(1000, np.float64))), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype F64", "expected F32"]),
    "safetensors: bfloat16 tensor": lambda d, m: (
        neutral_dir(d, m, torch_arrays={k: torch.from_numpy(v) if k != FC else torch.zeros(1000, dtype=torch.bfloat16)
                                     for k, v in m.tensors.items()}), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype BF16", "expected F32"]),
    "safetensors: wrong shape": lambda d, m: (
        neutral_dir(d, m, arrays=with_tensors(m, fc__bias=np.zeros(999, np.float32))), wb.WeightsMismatchError,
        [f"'{FC}'", "(999,)", "expected (1000,)"]),
    "safetensors: missing tensor": lambda d, m: (
        neutral_dir(d, m, arrays=with_tensors(m, conv1__bn__running_var=None)), wb.WeightsMismatchError,
        ["missing tensor 'conv1.bn.running_var'", "(64,)"]),
    "safetensors: unexpected tensor": lambda d, m: (
        neutral_dir(d, m, arrays=with_tensors(m, lambda__weight=np.zeros(3, np.float32))), wb.WeightsMismatchError,
        ["unexpected tensor 'lambda.weight'", "(3,)"]),
    "safetensors: NaN": lambda d, m: (
        neutral_dir(d, m, arrays=with_tensors(m, fc__bias=poisoned(m, FC, np.nan))), wb.WeightsMismatchError,
        [f"'{FC}'", "NaN or Inf", "--allow-nonfinite"]),
    "safetensors: Inf": lambda d, m: (
        neutral_dir(d, m, arrays=with_tensors(m, conv1__conv__weight=poisoned(m, "conv1.conv.weight", -np.inf))),
        wb.WeightsMismatchError, ["'conv1.conv.weight'", "NaN or Inf"]),
    "safetensors: file missing beside config.json": lambda d, m: (
        neutral_dir(d, m, False), wb.InputFileError, ["model.safetensors", "missing", "found nothing"]),
    # -- config.json --------------------------------------------------------------------------
    "config.json: missing": lambda d, m: (
        neutral_dir(d, m, config=False), wb.InputFileError, ["config.json", "missing", "found nothing"]),
    "config.json: a folder": lambda d, m: (
        mkdir(neutral_dir(d, m, config=False) / "config.json").parent, wb.InputFileError, ["config.json", "a folder"]),
    "config.json: malformed JSON": lambda d, m: (
        neutral_dir(d, m, config='{"format_version": 1,'), wb.InputFileError, ["config.json", "not valid JSON"]),
    "config.json: not an object": lambda d, m: (
        neutral_dir(d, m, config="[1, 2]"), wb.InputFileError, ["config.json", "expected a JSON object", "list"]),
    "config.json: deeply nested": lambda d, m: (
        neutral_dir(d, m, config="[" * 100000 + "]" * 100000), wb.InputFileError, ["config.json", "not valid JSON"]),
    "config.json: wrong architecture": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "architecture": "googlenet_paper"}), wb.WeightsMismatchError,
        ["config.json", "architecture is 'googlenet_paper'", "expected 'googlenet'"]),
    "config.json: unknown architecture": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "architecture": "resnet50"}), wb.WeightsMismatchError,
        ["config.json", "unknown architecture 'resnet50'", "googlenet"]),
    "config.json: num_classes not positive": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "num_classes": 0}), wb.InputFileError,
        ["config.json", "num_classes must be between 1 and", "found 0"]),
    "config.json: num_classes a string": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "num_classes": "1000"}), wb.InputFileError,
        ["config.json", "'num_classes' must be int", "found '1000'"]),
    "config.json: mean not three numbers": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "mean": [0.5, 0.5]}), wb.InputFileError,
        ["config.json", "'mean' must be a list of 3 floats", "found [0.5, 0.5]"]),
    "config.json: input_size holds a string": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "input_size": [3, "224", 224]}), wb.InputFileError,
        ["config.json", "'input_size' must be a list of 3 ints"]),
    "config.json: num_classes disagrees with tensors": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "num_classes": 10}), wb.WeightsMismatchError,
        ["'fc.weight'", "(1000, 1024)", "expected (10, 1024)"]),
    "config.json: aux_logits disagrees with tensors": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "aux_logits": False}), wb.WeightsMismatchError,
        ["unexpected tensor 'aux1."]),
    "config.json: unknown format_version": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "format_version": 2}), wb.InputFileError,
        ["config.json", "format_version 2 is not supported", "version 1"]),
    "config.json: format_version missing": lambda d, m: (
        neutral_dir(d, m, config={k: v for k, v in m.config.items() if k != "format_version"}), wb.InputFileError,
        ["'format_version' must be int", "found None"]),
    "config.json: unknown variant": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "variant": "tf"}), wb.WeightsMismatchError,
        ["config.json", "no variant 'tf'", "only 'default'"]),
    "config.json: transform_input not a bool": lambda d, m: (
        neutral_dir(d, m, config={**m.config, "transform_input": "yes"}), wb.InputFileError,
        ["'transform_input' must be bool", "found 'yes'"]),
    # -- PyTorch .pth ---------------------------------------------------------------------------
    "pth: empty file": lambda d, m: (write(d / "e.pth", b""), wb.InputFileError, ["not a readable PyTorch file"]),
    "pth: truncated archive": lambda d, m: (
        write(d / "t.pth", m.pth.read_bytes()[: m.pth.stat().st_size // 2]), wb.InputFileError,
        ["not a readable PyTorch file"]),
    "pth: random bytes": lambda d, m: (
        write(d / "r.pth", np.random.default_rng(0).bytes(4096)), wb.InputFileError, ["not a readable PyTorch file"]),
    "pth: a Flax msgpack renamed": lambda d, m: (
        write(d / "f.pth", m.msgpack.read_bytes()), wb.InputFileError, ["not a readable PyTorch file"]),
    "pth: pickle payload (os.system)": lambda d, m: (
        write(d / "evil.pth", pickle.dumps({"fc.bias": ShellPayload(d / "PWNED")}, protocol=2)), wb.UnsafeInputError,
        ["refused to unpickle", "GLOBAL", "system"]),
    "pth: full pickled nn.Module (zip)": lambda d, m: (
        torch_file(d, torch.nn.Sequential(torch.nn.Linear(2, 2))), wb.UnsafeInputError,
        ["refused to unpickle", "state_dict()", "torch.nn"]),
    "pth: int8 tensor": lambda d, m: (
        torch_file(d, {**m.sd, FC: torch.zeros(1000, dtype=torch.int8)}), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype int8", "expected float32"]),
    "pth: bfloat16 tensor": lambda d, m: (
        torch_file(d, {**m.sd, FC: torch.zeros(1000, dtype=torch.bfloat16)}), wb.WeightsMismatchError,
        [f"'{FC}'", "dtype bfloat16", "expected float32"]),
    "pth: Inf": lambda d, m: (
        torch_file(d, {**m.sd, FC: torch.full((1000,), float("inf"))}), wb.WeightsMismatchError,
        [f"'{FC}'", "NaN or Inf"]),
    "pth: a list, not a state_dict": lambda d, m: (
        torch_file(d, [torch.zeros(2)]), wb.InputFileError, ["expected a state_dict", "found list"]),
    "pth: entry not a tensor": lambda d, m: (
        torch_file(d, {**m.sd, FC: 3}), wb.InputFileError, [f"'{FC}'", "is a int, not a tensor"]),
    "pth: non-string key": lambda d, m: (
        torch_file(d, {**m.sd, 7: torch.zeros(2)}), wb.InputFileError, ["key 7", "expected a str"]),
    "pth: sparse tensor": lambda d, m: (
        torch_file(d, {**m.sd, FC: torch.zeros(1000).to_sparse()}), wb.InputFileError,
        [f"'{FC}'", "sparse", "expected a dense CPU tensor"]),
    "pth: same tensor with and without module.": lambda d, m: (
        torch_file(d, {**m.sd, "module." + FC: m.sd[FC]}), wb.WeightsMismatchError, [f"'{FC}'", "twice"]),
    "pth: a folder named .pth": lambda d, m: (mkdir(d / "dir.pth"), wb.InputFileError, ["is a folder, not a file"]),
    "pth: does not exist": lambda d, m: (d / "nope.pth", wb.InputFileError, ["no such file"]),
    # -- Flax .msgpack --------------------------------------------------------------------------
    "msgpack: empty file": lambda d, m: (
        write(d / "e.msgpack", b""), wb.InputFileError, ["not a readable Flax msgpack state"]),
    "msgpack: truncated": lambda d, m: (
        write(d / "t.msgpack", m.msgpack.read_bytes()[:100000]), wb.InputFileError,
        ["not a readable Flax msgpack state"]),
    "msgpack: a .pth renamed": lambda d, m: (
        write(d / "p.msgpack", m.pth.read_bytes()), wb.InputFileError, ["not a readable Flax msgpack state"]),
    "msgpack: a list, not a state": lambda d, m: (
        write(d / "l.msgpack", b"\x92\x01\x02"), wb.InputFileError, ["expected a nested dict", "found list"]),
    "msgpack: another model (googlenet_paper as googlenet)": lambda d, m: (
        other_model_flax(d), wb.WeightsMismatchError, ["tensor", "expected"]),
    "msgpack: float64 kernel": lambda d, m: (
        flax_file(d, m, lambda t: t["fc"].update(bias=t["fc"]["bias"].astype(np.float64))), wb.WeightsMismatchError,
        [f"'{FC}'", "float64", "expected float32"]),
    "msgpack: wrong shape": lambda d, m: (
        flax_file(d, m, lambda t: t["fc"].update(bias=np.zeros(7, np.float32))), wb.WeightsMismatchError,
        [f"'{FC}'", "(7,)", "expected (1000,)"]),
    "msgpack: missing variable": lambda d, m: (
        flax_file(d, m, lambda t: t["fc"].pop("bias")), wb.WeightsMismatchError, [f"missing tensor '{FC}'"]),
    "msgpack: unexpected variable": lambda d, m: (
        flax_file(d, m, lambda t: t.update(evil={"kernel": np.zeros(3, np.float32)})), wb.WeightsMismatchError,
        ["unexpected tensor 'evil.weight'", "(3,)"]),
    "msgpack: variable no layout rule matches": lambda d, m: (
        flax_file(d, m, lambda t: t["fc"].update(blob=np.zeros(3, np.float32))), wb.WeightsMismatchError,
        ["'fc.blob'", "matched 0 layout rules (expected exactly 1)"]),
    "msgpack: leaf not an array": lambda d, m: (
        flax_file(d, m, lambda t: t["fc"].update(bias="code")), wb.InputFileError, ["'fc.bias'", "not an array"]),
    # -- Keras files refused before Keras is imported (.keras archives: test_hostile_formats.py) ----
    ".h5 that is not .weights.h5": lambda d, m: (
        write(d / "legacy.h5", b"\x89HDF\r\n"), wb.InputFileError, ["must end in .weights.h5"]),
    ".weights.h5: empty file": lambda d, m: (
        write(d / "e.weights.h5", b""), wb.InputFileError, ["not a readable HDF5 file"]),
    ".weights.h5: not HDF5": lambda d, m: (
        write(d / "x.weights.h5", m.pth.read_bytes()[:4096]), wb.InputFileError, ["not a readable HDF5 file"]),
    # -- paths ----------------------------------------------------------------------------------
    "neutral: path does not exist": lambda d, m: (d / "missing.neutral", wb.InputFileError, ["no such file or folder"]),
    "neutral: a plain file given as the folder": lambda d, m: (
        write(d / "plain", b"x"), wb.InputFileError, ["a neutral checkpoint is a folder"]),
    "msgpack: a folder named .msgpack": lambda d, m: (
        mkdir(d / "dir.msgpack"), wb.InputFileError, ["is a folder, not a file"]),
}


def _overlap(m: Material):
    """Two tensors claiming the same bytes (fc.bias re-pointed at fc.weight's first 4000 bytes)."""
    begin = m.header["fc.weight"]["data_offsets"][0]
    return m.header_with(FC, data_offsets=[begin, begin + 4000])


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_input_is_refused_clearly(case, material, tmp_path):
    src, error, needles = CORPUS[case](tmp_path, material)
    refused(tmp_path, src, error, needles)
    assert not (tmp_path / "PWNED").exists(), "a payload ran"


def test_nonfinite_allowed_with_flag(material, tmp_path):
    src = neutral_dir(tmp_path, material, arrays=with_tensors(material, fc__bias=poisoned(material, FC, np.nan)))
    wb.convert(src, tmp_path / "ok.pth", allow_nonfinite=True)
    assert torch.isnan(torch.load(tmp_path / "ok.pth", weights_only=True)[FC]).sum() == 1


# ----------------------------------------------------------------------------- outputs

def _parent_is_file(d, m):
    write(d / "file", b"x")
    return d / "file" / "out.pth", ["expected a folder", "found a file"], {}


def _parent_missing(d, m):
    return d / "no" / "out.pth", ["expected a folder", "found nothing"], {}


def _exists(d, m):
    write(d / "out.pth", b"previous")
    return d / "out.pth", ["already exists", "--overwrite"], {}


def _neutral_exists(d, m):
    mkdir(d / "out.neutral")
    return d / "out.neutral", ["already exists"], {}


def _dir_over_file_format(d, m):
    mkdir(d / "out.pth")
    (d / "out.pth" / "keep").write_text("x")
    return d / "out.pth", ["could not be written"], {"overwrite": True}


def _keras_wrong_suffix(d, m):
    return d / "out.h5", ["must end in .weights.h5"], {}


def _not_writable(d, m):
    if os.geteuid() == 0:
        pytest.skip("root writes through permissions; covered by 'folder is a file' instead")
    ro = mkdir(d / "ro")
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
    before = listing(tmp_path)
    snapshot = {p: (tmp_path / p).read_bytes() for p in before if (tmp_path / p).is_file()}
    with pytest.raises(wb.BridgeError) as info:
        wb.convert(material.pth, dst, ARCH, **kw)
    message = str(info.value)
    assert type(info.value) is error, f"{type(info.value).__name__}: {message}"
    assert str(dst) in message and all(n in message for n in needles), message
    assert listing(tmp_path) == before
    assert {p: (tmp_path / p).read_bytes() for p in snapshot} == snapshot


