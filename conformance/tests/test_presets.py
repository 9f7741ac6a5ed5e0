"""Checkpoint facts a native file cannot record: ``convert --preset`` and the single facts.

Expected values come from the peers themselves: torchvision's weights enums and builders, timm's
pretrained configs, keras.applications' ``preprocess_input`` (in a subprocess: this process never
imports keras); pretrainedmodels' settings are held to theirs in test_pretrainedmodels.py.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import weights_bridge as wb
from conformance.compare.tolerances import TOLERANCES
from weights_bridge import presets
from weights_bridge.checkpoint import Checkpoint

from .helpers import require, run_cli, run_python

TV = "torchvision:IMAGENET1K_V1"


def _torchvision_pretrained(builder, weights, state_dict, monkeypatch, **kw):
    """torchvision's own builder called with its published weight set, the download replaced by
    ``state_dict``: the model a user of those weights gets, transform_input as torchvision sets it."""
    monkeypatch.setattr(type(weights), "get_state_dict", lambda self, *a, **k: state_dict)
    return builder(weights=weights, **kw).eval()


@pytest.mark.parametrize("arch", ["googlenet", "inception_v3"])
def test_torchvision_presets_are_torchvisions_facts(arch, monkeypatch):
    import torchvision.models as tvm

    builder, weights = {"googlenet": (tvm.googlenet, tvm.GoogLeNet_Weights.IMAGENET1K_V1),
                        "inception_v3": (tvm.inception_v3, tvm.Inception_V3_Weights.IMAGENET1K_V1)}[arch]
    blank = builder(weights=None, aux_logits=True, init_weights=False).state_dict()
    model = _torchvision_pretrained(builder, weights, blank, monkeypatch)
    t = weights.transforms()
    facts = presets.find(TV, arch).facts()
    assert facts["transform_input"] is model.transform_input is True
    assert facts["input_size"] == [3, t.crop_size[0], t.crop_size[0]]
    assert facts["mean"] == list(t.mean) and facts["std"] == list(t.std)
    assert facts["label_offset"] == 0 and len(weights.meta["categories"]) == 1000


@pytest.mark.parametrize("name,arch", [(n, a) for n, a in presets.PRESETS if n.startswith("timm:")])
def test_timm_presets_are_timms_pretrained_cfgs(name, arch):
    require("timm")
    import timm.models

    cfg = timm.models.get_pretrained_cfg(f"{arch}.{name.split(':')[1]}")
    facts = presets.find(name, arch).facts()
    assert facts["input_size"] == list(cfg.input_size)
    assert facts["mean"] == list(cfg.mean) and facts["std"] == list(cfg.std)
    assert facts["label_offset"] == (cfg.label_offset or 0) and facts["transform_input"] is False


KERAS_PREPROCESS = r"""
import json
import numpy as np
from keras.applications import inception_resnet_v2, inception_v3
pixels = np.array([[[[0.0, 127.5, 255.0]]]], dtype="float32")
print("RESULT " + json.dumps({name: m.preprocess_input(pixels.copy()).ravel().tolist()
                              for name, m in (("inception_v3", inception_v3),
                                              ("inception_resnet_v2", inception_resnet_v2))}))
"""


def test_keras_applications_presets_are_its_preprocess_input():
    require("keras")
    out = run_python(KERAS_PREPROCESS, process="keras-jax")
    got = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    pixels = np.array([0.0, 127.5, 255.0])
    for arch, values in got.items():
        p = presets.find("keras-applications:imagenet", arch)
        assert p.variant == "keras" and p.input_size == (3, 299, 299)  # keras.applications' default_size
        np.testing.assert_allclose((pixels / 255 - np.array(p.mean)) / np.array(p.std), values, atol=1e-6)


def test_flax_model_from_a_torchvision_preset_conversion_is_torchvisions(googlenet_pth, pool, monkeypatch, tmp_path):
    """The issue's case: torchvision's pretrained GoogLeNet runs with transform_input=True, its
    state_dict does not say so. Converted with the preset, the Flax model gives torchvision's
    logits; converted without, it silently gives others. The Flax side is the flax worker (the
    session's, its compilations cached), which builds the model with ``flax_io.to_model``."""
    import torchvision.models as tvm

    from conformance.agreement import matrix
    from conformance.agreement.tasks import Task

    sd = torch.load(googlenet_pth, weights_only=True)
    peer = _torchvision_pretrained(tvm.googlenet, tvm.GoogLeNet_Weights.IMAGENET1K_V1, sd, monkeypatch)
    task = Task("googlenet", "eval", 64)
    x = np.random.default_rng(0).standard_normal((task.batch, 3, task.size, task.size), dtype=np.float32)
    with torch.no_grad():
        expected = peer(torch.from_numpy(x)).numpy()
    run_cli("convert", googlenet_pth, tmp_path / "tv.neutral", "--arch", "googlenet", "--preset", TV, "--quiet",
            check=True)
    wb.convert(googlenet_pth, tmp_path / "plain.neutral", "googlenet")
    tol = TOLERANCES[("float32", "eval")]
    bound = min(tol["abs"], tol["rel"] * np.abs(expected).max())
    logits = {}
    for name in ("tv", "plain"):
        work = tmp_path / f"run-{name}"
        work.mkdir()
        np.save(work / f"input-{task.batch}x{task.size}.npy", x)  # the input matrix.run_tasks feeds
        errors, _ = matrix.run_tasks(["flax"], [task], {"neutral": str(tmp_path / f"{name}.neutral")}, work, pool)
        assert not errors, errors
        logits[name] = matrix.load_outputs(matrix.output_path(work, "flax", task))["logits"]
    assert np.abs(logits["tv"] - expected).max() <= bound
    assert np.abs(logits["plain"] - expected).max() > 100 * bound  # the facts are what made the difference


def test_facts_travel_and_override_the_preset(googlenet_pth, tmp_path):
    wb.convert(googlenet_pth, tmp_path / "a.neutral", "googlenet", preset=TV)
    cfg = json.loads((tmp_path / "a.neutral" / "config.json").read_text())
    assert (cfg["transform_input"], cfg["mean"], cfg["input_size"], cfg["preset"]) == \
        (True, [0.485, 0.456, 0.406], [3, 224, 224], TV)
    wb.convert(tmp_path / "a.neutral", tmp_path / "b.neutral", facts={"mean": [0.5, 0.5, 0.5],
                                                                       "input_size": [3, 192, 192]})
    back = wb.read(tmp_path / "b.neutral")  # neutral -> neutral: read back, overridden, written again
    assert back.transform_input is True and back.checkpoint_facts()["mean"] == [0.5, 0.5, 0.5]
    assert back.checkpoint_facts()["input_size"] == [3, 192, 192] and back.checkpoint_facts()["std"] == \
        [0.229, 0.224, 0.225]
    assert "preset" not in back.extra  # its facts no longer those of torchvision's weights
    assert back.model_kwargs()["transform_input"] is True  # what every framework's to_model builds with
    notes = []
    wb.convert(tmp_path / "a.neutral", tmp_path / "a.pth", progress=notes.append)
    assert any("holds tensors only" in n and "transform_input=True" in n for n in notes), notes


@pytest.mark.parametrize("arch,facts,needle", [
    ("googlenet", {"std": [1.0, 0.0, 1.0]}, "positive"),
    ("googlenet", {"mean": [0.5, 0.5]}, "a list of 3 floats"),
    ("googlenet", {"input_size": [1, 224, 224]}, "[3, height, width]"),
    ("googlenet", {"label_offset": 1000}, "below num_classes (1000)"),
    ("googlenet", {"label_offset": -1}, "0 or more"),
    ("googlenet", {"padding_convention": "tf"}, "not a fact that can be set"),
    ("inception_v4", {"transform_input": True}, "has no transform_input"),
])
def test_facts_that_cannot_describe_the_checkpoint_are_usage_errors(arch, facts, needle):
    with pytest.raises(wb.BridgeError) as info:
        presets.apply(Checkpoint(arch, {}), facts=facts)
    assert type(info.value) is wb.BridgeError and info.value.exit_code == 2 and needle in str(info.value)


def test_preset_names_and_variants_are_checked(googlenet_pth, tmp_path):
    ckpt = Checkpoint("inception_v3", {})
    for name, arch, needle in [("torchvision:IMAGENET1K_V2", "googlenet", "unknown preset"),
                               ("timm:tf_in1k", "googlenet", "published for inception_v3")]:
        with pytest.raises(wb.BridgeError, match=needle):
            presets.find(name, arch)
    with pytest.raises(wb.WeightsMismatchError, match="preset 'keras-applications:imagenet' is for variant 'keras'"):
        presets.apply(ckpt, "keras-applications:imagenet")  # a default-variant checkpoint
    assert presets.variant_for("keras-applications:imagenet", "inception_v3") == "keras"
    procs = [run_cli("convert", googlenet_pth, tmp_path / "x.neutral", "--arch", "googlenet", *extra)
             for extra in (["--preset", "timm:tf_in1k"], ["--std", "1,0,1"], ["--mean", "1,2"])]
    for proc, needle in zip(procs, ["published for inception_v3", "positive", "three finite numbers"]):
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "x.neutral").exists()


def test_verify_shows_the_facts_it_runs_with(googlenet_pth, tmp_path):
    wb.convert(googlenet_pth, tmp_path / "tv.neutral", "googlenet", preset=TV)
    proc = run_cli("verify", "googlenet", "--weights", tmp_path / "tv.neutral", "--impls", "torch,torchvision",
                   "--sizes", "64", "--json", tmp_path / "v.json", "--workdir", tmp_path / "w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    header = proc.stdout.split("\n\n")[0]
    assert f"facts from its config.json, preset {TV}" in header
    assert "transform_input     on" in header and "mean                0.485, 0.456, 0.406" in header
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["checkpoint"]["transform_input"] is True and report["checkpoint"]["preset"] == TV
