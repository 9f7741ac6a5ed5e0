"""Hostile Orbax checkpoint folders and .keras archives, refused in-process: truncated data, trees
that do not match the architecture, metadata that lies, code and foreign classes in a Keras
config. Nothing here imports Keras (a .keras archive is judged before its weights are read); the
archive cases that reach the weights are in test_hostile_keras_cli.py. docs/hostile_inputs.md
lists every case."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import weights_bridge as wb
from weights_bridge.checkpoint import Checkpoint

from .hostile import (ARCH, FC, edit_json, keras_archive, largest_file, mkdir, model_config, orbax_copy, orbax_tree,
                      refused, truncate, write, zip_archive)

BIAS = f"{FC}.value"  # the Orbax leaf holding fc.bias: an nnx.State leaf is its Variable's value


def _other_model_orbax(d):
    """A valid googlenet_paper Orbax folder (zeros), to be read as googlenet."""
    ckpt = Checkpoint("googlenet_paper", {})
    ckpt.tensors = {k: np.zeros(s, np.float32) for k, s in ckpt.expected_shapes().items()}
    wb.write(ckpt, d / "paper.orbax")
    return d / "paper.orbax"


def _leaf(key, value):
    def edit(leaves):
        if value is None:
            del leaves[key]
        else:
            leaves[key] = value
    return edit


def _rename_leaf(tree):
    entry = tree["tree_metadata"].pop("('fc', 'bias', 'value')")
    entry["key_metadata"][1]["key"] = "blob"
    tree["tree_metadata"]["('fc', 'blob', 'value')"] = entry


def _retype_leaf(tree):
    tree["tree_metadata"]["('fc', 'bias', 'value')"]["value_metadata"]["value_type"] = "string"


# name -> builder(d, material) returning (src, expected exception, needles[, convert kwargs])
ORBAX_CASES = {
    "orbax: truncated data file": lambda d, m: (
        orbax_copy(d, m, lambda f: truncate(largest_file(f))), wb.InputFileError,
        ["leaf '", "(tensor '", "unreadable data", "is not valid for value of size"]),
    "orbax: truncated manifest.ocdbt": lambda d, m: (
        orbax_copy(d, m, lambda f: truncate(f / "manifest.ocdbt")), wb.InputFileError,
        ["leaf '", "unreadable array header", "manifest"]),
    "orbax: data files missing": lambda d, m: (
        orbax_copy(d, m, lambda f: [p.unlink() for p in (f / "ocdbt.process_0" / "d").iterdir()]),
        wb.InputFileError, ["leaf '", "unreadable"]),
    "orbax: _METADATA truncated": lambda d, m: (
        orbax_copy(d, m, lambda f: truncate(f / "_METADATA")), wb.InputFileError, ["_METADATA", "not valid JSON"]),
    "orbax: _METADATA missing": lambda d, m: (
        orbax_copy(d, m, lambda f: (f / "_METADATA").unlink()), wb.InputFileError,
        ["_METADATA", "missing", "found nothing"]),
    "orbax: _METADATA not an object": lambda d, m: (
        orbax_copy(d, m, lambda f: (f / "_METADATA").write_text("[1, 2]")), wb.InputFileError,
        ["expected a JSON object with a 'tree_metadata' object", "found list"]),
    "orbax: another model (googlenet_paper as googlenet)": lambda d, m: (
        _other_model_orbax(d), wb.WeightsMismatchError, ["missing tensor 'conv1.bn.weight'", "expected shape (64,)"]),
    "orbax: missing leaf": lambda d, m: (
        orbax_tree(d, m, _leaf(BIAS, None)), wb.WeightsMismatchError, [f"missing tensor '{FC}'", "(1000,)"]),
    "orbax: extra leaf": lambda d, m: (
        orbax_tree(d, m, _leaf("evil.kernel.value", np.zeros(3, np.float32))), wb.WeightsMismatchError,
        ["unexpected tensor 'evil.weight'", "(3,)"]),
    "orbax: misshapen leaf": lambda d, m: (
        orbax_tree(d, m, _leaf(BIAS, np.zeros(7, np.float32))), wb.WeightsMismatchError,
        [f"'{FC}'", "(7,)", "expected (1000,)"]),
    "orbax: float64 leaf": lambda d, m: (
        orbax_tree(d, m, _leaf(BIAS, np.zeros(1000, np.float64))), wb.WeightsMismatchError,
        [f"'{FC}'", "float64", "expected float32"]),
    "orbax: leaf no layout rule matches": lambda d, m: (
        orbax_tree(d, m, _leaf("fc.blob.value", np.zeros(3, np.float32))), wb.WeightsMismatchError,
        ["'fc.blob'", "matched 0 layout rules"]),
    "orbax: NaN": lambda d, m: (
        orbax_tree(d, m, _leaf(BIAS, np.full(1000, np.nan, np.float32))), wb.WeightsMismatchError,
        [f"'{FC}'", "NaN or Inf"]),
    "orbax: metadata lies: names a leaf the data lacks": lambda d, m: (
        orbax_copy(d, m, lambda f: edit_json(f / "_METADATA", _rename_leaf)), wb.InputFileError,
        ["leaf 'fc.blob.value'", "unreadable array header", "does not exist"]),
    "orbax: metadata lies: an array called a string": lambda d, m: (
        orbax_copy(d, m, lambda f: edit_json(f / "_METADATA", _retype_leaf)), wb.InputFileError,
        [f"leaf '{BIAS}' is a 'string'", "expected an array"]),
    "orbax: metadata lies: a shape (data of shape (7,))": lambda d, m: (
        orbax_tree(d, m, _leaf(BIAS, np.zeros(7, np.float32)), keep_metadata=True), wb.WeightsMismatchError,
        [f"'{FC}'", "(7,)", "expected (1000,)"]),
    "orbax: metadata lies: storage (use_ocdbt false)": lambda d, m: (
        orbax_copy(d, m, lambda f: edit_json(f / "_METADATA", lambda t: t.update(use_ocdbt=False))),
        wb.InputFileError, ["leaf '", "unreadable array header"]),
    "orbax: a file named .orbax": lambda d, m: (
        write(d / "f.orbax", b"x"), wb.InputFileError, ["a file", "is a folder with _METADATA"]),
    "orbax: does not exist": lambda d, m: (d / "nope.orbax", wb.InputFileError, ["no such folder"]),
}

GOOGLENET = {"module": "impls.keras3", "class_name": "GoogLeNet", "registered_name": "inception_bridge>GoogLeNet"}
KERAS_CASES = {
    ".keras archive with a Lambda layer": lambda d, m: (
        keras_archive(d, True), wb.UnsafeInputError, ["Lambda layer 'evil'", "expected none", "nothing was deserialized"]),
    ".keras archive of another Keras model (Sequential)": lambda d, m: (
        keras_archive(d, False), wb.InputFileError,
        ["not an archive of this project's Keras models", "'Sequential'", "--from keras-applications"]),
    ".keras archive naming a class of another module": lambda d, m: (
        zip_archive(d / "popen.keras", model_config(compile_config={
            "optimizer": {"module": "subprocess", "class_name": "Popen", "config": {"args": "sh"},
                          "registered_name": None}})),
        wb.UnsafeInputError, ["'Popen'", "module 'subprocess'", "nothing was deserialized"]),
    ".keras archive naming our class registered by another package": lambda d, m: (
        zip_archive(d / "evil.keras", model_config(registered_name="evil>GoogLeNet")), wb.UnsafeInputError,
        ["'GoogLeNet'", "'evil>GoogLeNet'"]),
    ".keras archive: config.json not JSON": lambda d, m: (
        zip_archive(d / "j.keras", "{not json"), wb.InputFileError, ["config.json is not valid JSON"]),
    ".keras archive: no config.json": lambda d, m: (
        write(d / "n.keras", zip_archive(mkdir(d / "x") / "a.zip", "{}").read_bytes().replace(b"config.json",
                                                                                            b"cOnfig.json")),
        wb.InputFileError, ["no config.json in the archive"]),
    ".keras archive: not a zip": lambda d, m: (
        write(d / "r.keras", m.pth.read_bytes()[:4096][::-1]), wb.InputFileError, ["not a readable .keras archive"]),
    ".keras archive: truncated": lambda d, m: (
        zip_archive(d / "t.keras", model_config(), b"\0" * 100000, truncate=True), wb.InputFileError,
        ["not a readable .keras archive"]),
    ".keras archive: unexpected member": lambda d, m: (
        zip_archive(d / "u.keras", model_config(), extra={"assets/run.py": "import os"}), wb.InputFileError,
        ["unexpected member 'assets/run.py'"]),
    ".keras archive: unknown config field": lambda d, m: (
        zip_archive(d / "f.keras", model_config(config={**model_config()["config"], "evil": 1})), wb.InputFileError,
        ["unexpected field 'evil'"]),
    ".keras archive: num_classes a string": lambda d, m: (
        zip_archive(d / "s.keras", model_config(config={**model_config()["config"], "num_classes": "10"})),
        wb.InputFileError, ["field 'num_classes' must be int", "'10'"]),
    ".keras archive: class and architecture disagree": lambda d, m: (
        zip_archive(d / "c.keras", model_config(config={**model_config()["config"], "architecture": "inception_v3"})),
        wb.InputFileError, ["class GoogLeNet is 'googlenet'", "architecture 'inception_v3'"]),
    ".keras archive: another architecture than --arch": lambda d, m: (
        zip_archive(d / "a.keras", model_config()), wb.WeightsMismatchError,
        ["architecture is 'googlenet'", "expected 'googlenet_paper'"], {"arch": "googlenet_paper"}),
}
CASES = {**ORBAX_CASES, **KERAS_CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_folder_or_archive_is_refused_clearly(case, material, tmp_path):
    src, error, needles, *kw = CASES[case](tmp_path, material)
    refused(tmp_path, src, error, needles, **(kw[0] if kw else {}))
    assert "keras" not in sys.modules, "the pytest process imported keras (a later torchvision import would crash)"


def test_model_config_names_only_our_classes():
    """The Keras config the bridge writes passes its own check, and names nothing but our model."""
    from weights_bridge import keras_config

    config = model_config()
    assert {k: config[k] for k in GOOGLENET} == GOOGLENET
    assert keras_config.check("x.keras", config)["architecture"] == ARCH
    assert [cls for cls, *_ in keras_config.objects(config)] == ["GoogLeNet"]
