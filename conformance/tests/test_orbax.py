"""Orbax checkpoint folders (Flax NNX's documented save and restore): what the bridge writes is what
``StandardCheckpointer().save(path, nnx.state(model, ...))`` writes and restores through the
``nnx.eval_shape`` idiom; what Orbax writes the bridge reads, bit for bit; detection by layout;
quiet, atomic writes. Hostile folders are in test_hostile_formats.py."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import weights_bridge as wb
from weights_bridge import flax_io

from .helpers import run_cli

ocp = pytest.importorskip("orbax.checkpoint")
ARCH = "googlenet"


@pytest.fixture(scope="module")
def ckpt(googlenet_pth):
    return wb.read(googlenet_pth, architecture=ARCH)


@pytest.fixture(scope="module")
def model(ckpt):
    return flax_io.to_model(ckpt)


def _state(model):
    """The model's weights as a trained model holds them: jax arrays (``to_model`` leaves numpy)."""
    import jax
    from flax import nnx

    return jax.tree.map(jax.numpy.asarray, nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat)))


def _same(a: wb.Checkpoint, b: wb.Checkpoint):
    assert a.tensors.keys() == b.tensors.keys()
    assert all(a.tensors[k].dtype == b.tensors[k].dtype and np.array_equal(a.tensors[k], b.tensors[k])
               for k in a.tensors)
    assert (a.num_classes, a.aux_logits, a.variant) == (b.num_classes, b.aux_logits, b.variant)


def test_bridge_writes_what_orbax_writes(ckpt, model, tmp_path):
    """The same tree (every leaf's path, kind and write shape) as Orbax's own save of the model's
    state, and the same arrays restored."""
    orbax = ocp.StandardCheckpointer()
    orbax.save((tmp_path / "by_orbax").resolve(), _state(model))
    orbax.wait_until_finished()
    wb.write(ckpt, tmp_path / "by_bridge.orbax")
    tree = lambda p: json.loads((p / "_METADATA").read_text())["tree_metadata"]
    assert tree(tmp_path / "by_bridge.orbax") == tree(tmp_path / "by_orbax")
    restored = [ocp.StandardCheckpointer().restore((tmp_path / name).resolve()) for name in ("by_orbax", "by_bridge.orbax")]
    a, b = (dict(flax_io.flatten(r)) for r in restored)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    _same(wb.read(tmp_path / "by_orbax", "orbax", ARCH), ckpt)  # and the bridge reads Orbax's own, by layout


def test_eval_shape_idiom_restores_the_bridges_folder(ckpt, tmp_path):
    """Flax's guide: restore into the state of an ``nnx.eval_shape`` model, merge; the model then
    holds every tensor of the checkpoint, bit for bit."""
    from flax import nnx

    from impls.flax_nnx import create_model

    wb.write(ckpt, tmp_path / "g.orbax")
    abstract = nnx.eval_shape(lambda: create_model(ARCH))
    graphdef, state, rest = nnx.split(abstract, nnx.Any(nnx.Param, nnx.BatchStat), ...)
    restored = ocp.StandardCheckpointer().restore((tmp_path / "g.orbax").resolve(), state)
    _same(flax_io.from_model(nnx.merge(graphdef, restored, rest), ARCH), ckpt)


def test_pure_dict_folder_reads_the_same(ckpt, model, tmp_path):
    """``nnx.to_pure_dict(state)`` saved (leaves without ``.value``) reads as the state does."""
    from flax import nnx

    orbax = ocp.StandardCheckpointer()
    orbax.save((tmp_path / "pure").resolve(), nnx.to_pure_dict(_state(model)))
    orbax.wait_until_finished()
    assert wb.detect(tmp_path / "pure") == "orbax"
    _same(wb.read(tmp_path / "pure", architecture=ARCH), ckpt)


def test_detection_by_layout(ckpt, tmp_path):
    wb.write(ckpt, tmp_path / "g.orbax")
    os.rename(tmp_path / "g.orbax", tmp_path / "plain_name")
    assert wb.detect(tmp_path / "plain_name") == "orbax"
    assert wb.detect(tmp_path / "new.orbax") == "orbax"  # a destination: by its name
    wb.write(ckpt, tmp_path / "n")
    assert wb.detect(tmp_path / "n") == "safetensors"  # the neutral folder is not mistaken for one


def test_cli_round_trip_is_quiet_and_bit_identical(googlenet_pth, tmp_path):
    """torch -> orbax -> torch through the CLI: nothing on stdout, only the bridge's own progress on
    stderr (no Orbax, absl or tensorstore logging), nothing at all with --quiet; torch.equal tensors."""
    there = run_cli("convert", googlenet_pth, tmp_path / "g.orbax", "--arch", ARCH, check=True)
    assert there.stdout == "" and there.stderr.startswith("reading ")
    assert all(ln.startswith(("reading ", "writing ", "  ")) for ln in there.stderr.splitlines()), there.stderr
    back = run_cli("convert", tmp_path / "g.orbax", tmp_path / "back.pth", "--arch", ARCH, "--quiet", check=True)
    assert back.stdout == back.stderr == ""
    a, b = (torch.load(p, weights_only=True) for p in (googlenet_pth, tmp_path / "back.pth"))
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked"))


def test_failed_write_leaves_nothing_and_keeps_the_old(ckpt, tmp_path, monkeypatch):
    """Orbax failing midway: OutputError, no temporary left, an existing folder untouched."""
    dst = tmp_path / "g.orbax"
    wb.write(ckpt, dst)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    def broken(self, directory, *args, **kwargs):
        (directory.parent / "partial").mkdir()
        raise ValueError("disk went away")

    monkeypatch.setattr(ocp.Checkpointer, "save", broken)
    with pytest.raises(wb.OutputError, match="disk went away") as info:
        wb.write(ckpt, dst, overwrite=True)
    with pytest.raises(wb.OutputError):
        wb.write(ckpt, tmp_path / "new.orbax")
    assert str(dst) in str(info.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    monkeypatch.undo()
    _same(wb.read(dst, architecture=ARCH), ckpt)
