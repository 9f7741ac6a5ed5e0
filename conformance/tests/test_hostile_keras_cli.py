"""Hostile Keras weight files and .keras archives whose weights must be read (in one subprocess: the
pytest process never imports keras or tensorflow) and the CLI's exit codes and one-line messages
for bad input.
"""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from .helpers import run_cli, run_python
from .hostile import (
    ARCH, FC, ShellPayload, keras_archive, largest_file, listing, mkdir, model_config, neutral_dir, orbax_copy, truncate,
    write, zip_archive)


# ----------------------------------------------------------------------------- Keras (one subprocess)

KERAS_SCRIPT = r"""
import json, os, sys
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


def _replace(f, name, array):
    owner = f[name].parent.attrs["name"]
    del f[name]
    f.create_dataset(name, data=array)
    f[name].parent.attrs["name"] = owner


def owned(f, layer, index=0):
    """The dataset path of variable ``index`` of the Keras layer ``layer`` (by the name its group
    carries, as the bridge reads it)."""
    found = []
    f.visititems(lambda n, o: found.append(n) if hasattr(o, "shape") and o.parent.attrs.get("name") == layer
                 and n.endswith(f"/{index}") else None)
    return found[0]


def _drop_block(f):  # conv2's whole ConvBlock group: its conv and its BN
    del f[owned(f, "conv2-conv").rsplit("/", 3)[0]]


BN = "conv2-bn"
KERAS_CASES = {
    ".weights.h5: missing layer": (_drop_block, "WeightsMismatchError",
                                   ["missing 'conv2-conv/kernel'", "expected shape (1, 1, 64, 64)"]),
    ".weights.h5: extra layer": (lambda f: f.create_dataset("layers/lambda/vars/0", data=np.zeros(3, np.float32)),
                                 "WeightsMismatchError", ["unexpected 'layers/lambda/vars/0'", "(3,)"]),
    ".weights.h5: float64 variable": (lambda f: _replace(f, owned(f, BN), f[owned(f, BN)][...].astype(np.float64)),
                                      "WeightsMismatchError", ["(conv2-bn/gamma)", "float64", "expected float32"]),
    ".weights.h5: wrong shape": (lambda f: _replace(f, owned(f, BN), f[owned(f, BN)][...][:-1]), "WeightsMismatchError",
                                 ["(conv2-bn/gamma)", "(63,)", "expected (64,)"]),
}


def _head(**fields):
    return lambda config: config["config"].update(fields)


def _half(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


# .keras archives of our model around the valid weights: (config edit, weights edit (an h5py edit
# of the file, or bytes -> bytes), exception, needles).
ARCHIVE_CASES = {
    ".keras archive: config.json lies about num_classes": (
        _head(num_classes=10), None, "WeightsMismatchError",
        ["config.json says num_classes=10", "num_classes=1000", "'fc/kernel'", "(1024, 1000)"]),
    ".keras archive: config.json lies about aux_logits": (
        _head(aux_logits=False), None, "WeightsMismatchError", ["aux_logits=False", "holds", "aux_logits=True"]),
    ".keras archive: truncated model.weights.h5": (
        None, _half, "InputFileError", ["(model.weights.h5)", "not a readable HDF5 file"]),
    ".keras archive: missing layer in model.weights.h5": (
        None, _drop_block, "WeightsMismatchError", ["(model.weights.h5)", "missing 'conv2-conv/kernel'"]),
    ".keras archive: misshapen variable in model.weights.h5": (
        None, KERAS_CASES[".weights.h5: wrong shape"][0], "WeightsMismatchError",
        ["(model.weights.h5)", "(conv2-bn/gamma)", "(63,)", "expected (64,)"]),
}


def _archive(d, keras_file, config_edit, weights_edit):
    import h5py

    config = model_config()
    if config_edit:
        config_edit(config)
    weights = d / "w.h5"
    shutil.copy(keras_file, weights)
    if weights_edit and weights_edit is not _half:
        with h5py.File(weights, "r+") as f:
            weights_edit(f)
    raw = weights.read_bytes()
    weights.unlink()
    return zip_archive(d / "bad.keras", config, _half(raw) if weights_edit is _half else raw)


@pytest.fixture(scope="module")
def keras_file(material):
    path = material.root / "valid.weights.h5"
    run_cli("convert", material.pth, path, "--arch", ARCH, "--quiet", check=True, fresh=True)
    return path


def test_keras_files_with_wrong_layers(keras_file, tmp_path):
    import h5py

    srcs = {}
    for i, (case, (edit, _, _)) in enumerate(KERAS_CASES.items()):
        d = mkdir(tmp_path / f"case{i}")
        srcs[case] = d / "bad.weights.h5"
        shutil.copy(keras_file, srcs[case])
        with h5py.File(srcs[case], "r+") as f:
            edit(f)
    for i, (case, (config_edit, weights_edit, _, _)) in enumerate(ARCHIVE_CASES.items()):
        srcs[case] = _archive(mkdir(tmp_path / f"archive{i}"), keras_file, config_edit, weights_edit)
    line = [ln for ln in run_python(KERAS_SCRIPT, *srcs.values()).splitlines() if ln.startswith("RESULT ")]
    assert line
    results = json.loads(line[0][len("RESULT "):])
    cases = {**{c: v[1:] for c, v in KERAS_CASES.items()}, **{c: v[2:] for c, v in ARCHIVE_CASES.items()}}
    for case, (error, needles) in cases.items():
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
    evil = write(tmp_path / "evil.pth", pickle.dumps({FC: ShellPayload(marker)}, protocol=2))
    corrupt = neutral_dir(mkdir(tmp_path / "c"), material, material.raw[:len(material.raw) // 3])
    bf16 = neutral_dir(mkdir(tmp_path / "b"), material,
                    torch_arrays={k: torch.from_numpy(v).to(torch.bfloat16) for k, v in material.tensors.items()})
    lam = keras_archive(tmp_path, True)
    torn = orbax_copy(tmp_path, material, lambda f: truncate(largest_file(f)))  # tensorstore fails mid-read
    exists = write(tmp_path / "exists.pth", b"previous")
    before = listing(tmp_path)
    out = tmp_path / "out.pth"
    q = ("--arch", ARCH, "--quiet")
    _one_line(run_cli("convert", evil, out, *q), 4, str(evil), "refused to unpickle")
    _one_line(run_cli("convert", corrupt, out, "--quiet"), 3, str(corrupt), "out of range")
    _one_line(run_cli("convert", bf16, out, "--quiet"), 5, "dtype BF16, expected F32")
    _one_line(run_cli("convert", lam, out, *q), 4, "Lambda layer 'evil'")
    _one_line(run_cli("convert", torn, out, *q), 3, str(torn), "unreadable data")
    _one_line(run_cli("convert", material.pth, exists, *q), 6, "already exists")
    _one_line(run_cli("convert", material.pth, out, "--quiet"), 2, "--arch")
    # inspect reads through the same readers: the same refusals, the same exit codes
    _one_line(run_cli("inspect", evil, "--arch", ARCH), 4, str(evil), "refused to unpickle")
    _one_line(run_cli("inspect", corrupt), 3, str(corrupt), "out of range")
    _one_line(run_cli("inspect", bf16), 5, "dtype BF16, expected F32")
    _one_line(run_cli("inspect", lam, "--arch", ARCH), 4, "Lambda layer 'evil'")
    _one_line(run_cli("inspect", material.pth), 2, "--arch")
    assert not marker.exists(), "the pickle payload ran"
    assert listing(tmp_path) == before and (tmp_path / "exists.pth").read_bytes() == b"previous"



@pytest.mark.parametrize("args", [("convert", "a.pth", "b.neutral", "--arch", "resnet50"),
                                  ("inspect", "a.pth", "--arch", "resnet50"), ("verify", "resnet50"),
                                  ("summary", "resnet50")])
def test_unknown_architecture_is_a_usage_error(args):
    """Every command that takes --arch or ARCH: exit 2 and the known names, before any work."""
    _one_line(run_cli(*args), 2, "unknown architecture 'resnet50'; known: googlenet, googlenet_paper, inception_v3")


def test_corpus_size():
    from .test_hostile_formats import CASES
    from .test_hostile_inputs import CORPUS, OUTPUT_CASES

    assert len(CORPUS) + len(CASES) + len(KERAS_CASES) + len(ARCHIVE_CASES) + len(OUTPUT_CASES) >= 30
