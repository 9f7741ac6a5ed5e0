"""The material the hostile-input tests derive every bad file from, and the checks they share.

One seeded GoogLeNet checkpoint (``googlenet_pth``) is converted to the valid neutral, Flax and
Orbax files; each case edits a copy (Orbax folders are re-saved by Orbax itself). ``refused`` is the contract: the documented exception type, a
one-line message naming the source path and what was expected versus found, and the folder
unchanged afterwards (hidden temporaries included).
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import weights_bridge as wb
from weights_bridge import keras_config, neutral
from weights_bridge.checkpoint import Checkpoint

ARCH = "googlenet"
FC = "fc.bias"


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
        self.orbax = root / "valid.orbax"
        wb.convert(pth, self.orbax, ARCH)

    def safetensors(self, header: dict, data: bytes = None) -> bytes:
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + (self.data if data is None else data)

    def header_with(self, name, **changes) -> dict:
        h = json.loads(json.dumps(self.header))
        h[name].update(changes)
        return h


def neutral_dir(d: Path, m: Material, tensors: bytes = None, config=None, *, arrays=None, torch_arrays=None):
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


def with_tensors(m: Material, **changes):
    arrays = dict(m.tensors)
    for k, v in changes.items():
        arrays[k.replace("__", ".")] = v
    return {k: v for k, v in arrays.items() if v is not None}


def poisoned(m, key, value):
    a = m.tensors[key].copy()
    a.flat[3] = value
    return a


def torch_file(d: Path, obj, name="ckpt.pth"):
    torch.save(obj, d / name)
    return d / name


def flax_file(d: Path, m: Material, edit, name="ckpt.msgpack"):
    from flax import serialization

    tree = serialization.msgpack_restore(m.msgpack.read_bytes())
    edit(tree)
    (d / name).write_bytes(serialization.msgpack_serialize(tree))
    return d / name


def other_model_flax(d: Path):
    """A valid googlenet_paper Flax state (zeros), to be read as googlenet."""
    from weights_bridge import flax_io
    from weights_bridge.checkpoint import Checkpoint

    ckpt = Checkpoint("googlenet_paper", {})
    ckpt.tensors = {k: np.zeros(s, np.float32) for k, s in ckpt.expected_shapes().items()}
    flax_io.write(ckpt, d / "paper.msgpack")
    return d / "paper.msgpack"


class ShellPayload:
    """A pickle whose loading would run a shell command creating the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def keras_archive(d: Path, lambda_layer: bool):
    """A Keras Sequential model's archive, with a Lambda layer holding code or a plain Dense."""
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "config": {"name": "input"}, "registered_name": None},
              {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
               "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {"code": "payload"}}}}
              if lambda_layer else
              {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense"}, "registered_name": None}]
    config = {"module": "keras", "class_name": "Sequential", "config": {"layers": layers}, "registered_name": None}
    return zip_archive(d / ("lambda.keras" if lambda_layer else "plain.keras"), config)


def model_config(**changes) -> dict:
    """The config.json of our Keras GoogLeNet (as ``model.save`` writes it), with top-level changes."""
    return {**keras_config.model_config(Checkpoint(ARCH, {})), **changes}


def zip_archive(path: Path, config, weights: bytes = b"", extra=None, truncate=False):
    """A .keras zip: metadata.json, config.json (an object, or text as it is), model.weights.h5."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        z.writestr("model.weights.h5", weights)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


# ----------------------------------------------------------------------------- Orbax folders

def orbax_copy(d: Path, m: Material, edit=None, name="ckpt.orbax"):
    """A copy of the valid Orbax folder, ``edit(folder)`` applied to its files."""
    dst = d / name
    shutil.copytree(m.orbax, dst)
    if edit:
        edit(dst)
    return dst


def orbax_tree(d: Path, m: Material, edit, name="ckpt.orbax", keep_metadata=False):
    """An Orbax folder saved by Orbax (``StandardCheckpointer``) from the valid state with its
    leaves ({'fc.bias.value': array}) edited; ``keep_metadata``: then given the valid _METADATA."""
    import orbax.checkpoint as ocp

    from weights_bridge import flax_io

    leaves = dict(flax_io.flatten(ocp.StandardCheckpointer().restore(m.orbax.resolve())))
    edit(leaves)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save((d / name).resolve(), flax_io.nest(leaves))
    checkpointer.wait_until_finished()
    if keep_metadata:
        shutil.copy(m.orbax / "_METADATA", d / name / "_METADATA")
    return d / name


def edit_json(path: Path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def write(path: Path, data: bytes):
    path.write_bytes(data)
    return path


def mkdir(path: Path):
    path.mkdir()
    return path


def listing(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(d: Path, src, error, needles, arch=ARCH, dst=None, **kw):
    dst = dst or d / "out.msgpack"
    before = listing(d)
    with pytest.raises(wb.BridgeError) as info:
        wb.convert(src, dst, arch, **kw)
    message = str(info.value)
    assert type(info.value) is error, f"{type(info.value).__name__}: {message}"
    assert str(src) in message, message
    for n in needles:
        assert n in message, f"{n!r} not in {message!r}"
    assert "\n" not in message, message
    assert listing(d) == before, "something was written or left behind"
    return message


