"""``inception-bridge inspect``: what a file holds, against torchvision's own counts, and it refuses
every hostile input exactly as ``convert`` does (the same exception, so the same exit code; the
CLI's exit codes themselves are in test_hostile_keras_cli.py)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import weights_bridge as wb
from weights_bridge import neutral
from weights_bridge.inspection import inspect_file, refuse_nonfinite

from .helpers import run_cli
from .hostile import ARCH, FC, neutral_dir, poisoned, with_tensors
from .test_hostile_inputs import CORPUS


@pytest.fixture(scope="module")
def torchvision_counts():
    """Parameter and tensor counts as torchvision states or computes them, not as we do."""
    import torchvision.models as tvm

    model = tvm.googlenet(weights=None, aux_logits=True, init_weights=False)
    buffers = {k: b for k, b in model.named_buffers() if not k.endswith("num_batches_tracked")}
    return {"published_no_aux": tvm.GoogLeNet_Weights.IMAGENET1K_V1.meta["num_params"],
            "shapes": {k: tuple(t.shape) for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked")},
            "parameters": sum(p.numel() for p in model.parameters()),
            "bn_statistics": sum(b.numel() for b in buffers.values()),
            "tensors": len(list(model.parameters())) + len(buffers)}


def _json(*args):
    proc = run_cli("inspect", *args, "--json", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_inspect_neutral_with_preset(googlenet_pth, torchvision_counts, tmp_path):
    wb.convert(googlenet_pth, tmp_path / "g.neutral", ARCH, preset="torchvision:IMAGENET1K_V1")
    r = _json(tmp_path / "g.neutral")
    assert r["parameters"] == torchvision_counts["parameters"] == 13_004_888  # README: torchvision, with aux
    assert (r["tensors"], r["bn_statistics"]) == (torchvision_counts["tensors"], torchvision_counts["bn_statistics"])
    assert (r["format"], r["architecture"], r["variant"], r["num_classes"], r["aux_heads"]) == \
        ("safetensors", ARCH, "default", 1000, ["aux1", "aux2"])
    assert r["dtypes"] == {"float32": r["tensors"]} and r["finite"] and r["nonfinite"] == []
    assert r["facts_recorded"] and r["preset"] == "torchvision:IMAGENET1K_V1"
    assert r["facts"] == {"transform_input": True, "input_size": [3, 224, 224], "input_space": "RGB",
                          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "label_offset": 0,
                          "padding_convention": "torch symmetric; max pools ceil_mode=True"}


def test_inspect_pth_without_aux_is_torchvisions_published_count(googlenet_pth, torchvision_counts, tmp_path):
    sd = {k: v for k, v in torch.load(googlenet_pth, weights_only=True).items() if not k.startswith("aux")}
    torch.save(sd, tmp_path / "noaux.pth")
    r = _json(tmp_path / "noaux.pth", "--arch", ARCH)
    assert r["parameters"] == torchvision_counts["published_no_aux"] == 6_624_904  # GoogLeNet_Weights meta
    assert r["aux_heads"] == [] and r["format"] == "torch" and not r["facts_recorded"]
    assert r["facts"]["transform_input"] is False  # a state_dict cannot say; the variant's own
    proc = run_cli("inspect", tmp_path / "noaux.pth")
    assert proc.returncode == 2 and "--arch" in proc.stderr


def test_inspect_msgpack_table(googlenet_pth, tmp_path):
    wb.convert(googlenet_pth, tmp_path / "g.msgpack", ARCH)
    proc = run_cli("inspect", tmp_path / "g.msgpack", "--arch", ARCH, "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in proc.stdout.splitlines() if not line.startswith(" "))
    assert rows["format"] == "flax" and rows["architecture"] == ARCH and rows["aux heads"] == "aux1, aux2"
    assert rows["parameters"].startswith("13,004,888 trainable") and rows["finite"] == "yes"
    assert "transform_input     off" in proc.stdout and "a flax file holds tensors only" in proc.stdout
    assert json.loads((tmp_path / "r.json").read_text())["parameters"] == 13_004_888


def test_inspect_names_nonfinite_tensors_and_exits_as_convert(material, tmp_path):
    src = neutral_dir(tmp_path, material, arrays=with_tensors(material, fc__bias=poisoned(material, FC, np.inf)))
    refused = run_cli("inspect", src)
    assert refused.returncode == 5 and f"'{FC}'" in refused.stderr and "--allow-nonfinite" in refused.stderr
    assert f"no: NaN or Inf in 1 tensors: {FC}" in refused.stdout  # the report comes first
    allowed = run_cli("inspect", src, "--allow-nonfinite", "--json", "-")
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["nonfinite"] == [FC]


@pytest.mark.parametrize("case", list(CORPUS))
def test_inspect_refuses_what_convert_refuses(case, material, tmp_path):
    """The hostile corpus (test_hostile_inputs.py): each case raises the exception convert
    raises, hence the same exit code; the message names the file."""
    src, error, _ = CORPUS[case](tmp_path, material)
    with pytest.raises(wb.BridgeError) as info:
        refuse_nonfinite(inspect_file(src, architecture=ARCH))
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert str(src) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists(), "a payload ran"


# The corpus cases whose fault is in the safetensors header or the folder: what the header alone shows.
HEADER_CASES = [c for c in CORPUS if c.startswith("neutral: ") or (c.startswith("safetensors: ") and not any(
    w in c for w in ("wrong shape", "missing tensor", "unexpected tensor", "NaN", "Inf")))]


def test_tensor_shapes_from_the_header_are_torchvisions(googlenet_pth, torchvision_counts, tmp_path):
    """``neutral.tensor_shapes`` (how a training step sizes its memory without reading the data)."""
    wb.convert(googlenet_pth, tmp_path / "g.neutral", ARCH)
    assert neutral.tensor_shapes(tmp_path / "g.neutral") == torchvision_counts["shapes"]


@pytest.mark.parametrize("case", HEADER_CASES)
def test_tensor_shapes_refuse_a_bad_header_as_read_does(case, material, tmp_path):
    src, error, _ = CORPUS[case](tmp_path, material)
    with pytest.raises(error) as info:
        neutral.tensor_shapes(src)
    assert str(src) in str(info.value) and "\n" not in str(info.value)
