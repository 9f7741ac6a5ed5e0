"""Peer checkpoints of Inception v3: timm's state_dict and keras.applications.InceptionV3's files.

Import, export and round trips through the bridge, the keras.applications parameter count
mapped onto ours, and agreement of each peer with our implementation holding its converted
weights (odd and even input sizes). Keras runs only in subprocesses (see conftest)."""
import json

import numpy as np
import pytest
import torch

import weights_bridge as wb
from conformance.compare.tolerances import within
from impls.spec import model_spec
from impls.spec.summary import summarize
from impls.spec.tensors import canonical_shapes, is_parameter
from weights_bridge import torch_io

from .helpers import h5_datasets, require, run_cli

KERAS_APPS_PARAMS = 23_851_784  # keras.applications.InceptionV3().count_params(), include_top, 1000 classes


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def test_keras_applications_count_maps_onto_ours():
    """Keras counts BN moving statistics as weights and has no gamma and no aux head:
    keras = ours_without_aux - sum(gamma) + sum(moving_mean + moving_var) = ours_without_aux + sum(BN channels)."""
    ours = summarize(model_spec("inception_v3", aux_logits=True), (299, 299))
    assert ours[-2].name == "total" and ours[-2].params == 27_161_264
    without_aux = ours[-1].params
    shapes = canonical_shapes(model_spec("inception_v3", aux_logits=False, variant="keras"))
    assert sum(_numel(s) for k, s in shapes.items() if is_parameter(k)) == without_aux == 23_834_568
    gamma = sum(_numel(s) for k, s in shapes.items() if k.endswith(".bn.weight"))
    stats = sum(_numel(s) for k, s in shapes.items() if k.endswith((".running_mean", ".running_var")))
    assert gamma == 17_216 and stats == 2 * gamma
    assert without_aux - gamma + stats == without_aux + gamma == KERAS_APPS_PARAMS


def test_keras_variant_differs_only_in_avg_pool_divisor():
    default, keras = model_spec("inception_v3"), model_spec("inception_v3", variant="keras")
    assert canonical_shapes(default) == canonical_shapes(model_spec("inception_v3", variant="keras"))
    pools = [layer for _, b in keras.stages if hasattr(b, "paths") for name, layer in b.children() if name == "avgpool"]
    assert len(pools) == 9 and not any(p.count_include_pad for p in pools)
    assert keras.config.has_aux is False and keras.config.bn_scale is False
    assert all(layer.count_include_pad for _, b in default.stages if hasattr(b, "paths")
               for name, layer in b.children() if name == "avgpool")
    with pytest.raises(ValueError, match="variant"):
        model_spec("googlenet", variant="keras")


# --- timm ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def timm_pth(tmp_path_factory):
    """A seeded timm inception_v3 (aux head on), saved as timm users save it."""
    timm = pytest.importorskip("timm")
    from conformance.frameworks.torch_nn.seed import randomize_

    model = timm.create_model("inception_v3", pretrained=False, num_classes=10, aux_logits=True)
    randomize_(model, seed=3, calibration_size=299)
    path = tmp_path_factory.mktemp("timm") / "timm_inception_v3.pth"
    torch.save(model.state_dict(), path)
    return path


def test_timm_keys_equal_torchvision():
    timm = pytest.importorskip("timm")
    import torchvision

    for aux in (True, False):
        t = timm.create_model("inception_v3", pretrained=False, num_classes=10, aux_logits=aux).state_dict()
        v = torchvision.models.Inception3(num_classes=10, aux_logits=aux, init_weights=False).state_dict()
        assert {k: tuple(x.shape) for k, x in t.items()} == {k: tuple(x.shape) for k, x in v.items()}


def test_timm_round_trip_and_strict_load(tmp_path):
    timm = pytest.importorskip("timm")
    timm_pth = tmp_path / "timm.pth"  # timm's own init: the round trip needs no calibrated weights
    torch.save(timm.create_model("inception_v3", pretrained=False, num_classes=10, aux_logits=True).state_dict(),
               timm_pth)
    run_cli("convert", timm_pth, tmp_path / "n", "--arch", "inception_v3", "--from", "timm", "--quiet", check=True)
    cfg = json.loads((tmp_path / "n" / "config.json").read_text())
    assert (cfg["variant"], cfg["num_classes"], cfg["aux_logits"]) == ("default", 10, True)
    run_cli("convert", tmp_path / "n", tmp_path / "back.pth", "--to", "timm", "--quiet", check=True)
    a, b = torch.load(timm_pth, weights_only=True), torch.load(tmp_path / "back.pth", weights_only=True)
    a = {k: v for k, v in a.items() if not k.endswith("num_batches_tracked")}
    assert all(torch.equal(a[k], b[k]) for k in a) and set(a) <= set(b)
    model = timm.create_model("inception_v3", pretrained=False, num_classes=10, aux_logits=True)
    model.load_state_dict(b, strict=True)


@pytest.mark.slow
@pytest.mark.parametrize("size", [299, 307, 320])
def test_timm_agrees_with_ours(timm_pth, size):
    """Eval logits and train-mode (logits, aux) of timm vs our torch model on the converted weights."""
    timm = pytest.importorskip("timm")
    from impls.torch_nn import inception_v3

    ckpt = wb.read(timm_pth, "timm", "inception_v3")
    ours = inception_v3(num_classes=10, aux_logits=True, dropout=0.0)
    ours.load_state_dict(torch_io.state_dict(ckpt), strict=True)
    peer = timm.create_model("inception_v3", pretrained=False, num_classes=10, aux_logits=True)
    peer.load_state_dict(torch.load(timm_pth, weights_only=True), strict=True)
    x = torch.from_numpy(np.random.default_rng(size).standard_normal((2, 3, size, size), dtype=np.float32))
    with torch.no_grad():
        a, b = ours.eval()(x), peer.eval()(x)[0]
        d = float((a - b).abs().max())
        assert within(d, float(a.abs().max()), "eval"), d
        if size == 299:  # the aux head's 5x5 conv needs the 17x17 map of ~299 input
            a, b = ours.train()(x), peer.train()(x)
            for f, g in zip(a, b):
                d = float((f - g).abs().max())
                assert within(d, float(f.abs().max()), "train"), d


def test_timm_export_refuses_keras_variant(tmp_path):
    tensors = {k: np.ones(s, np.float32) for k, s in canonical_shapes(
        model_spec("inception_v3", num_classes=10, aux_logits=False, variant="keras")).items()}
    ckpt = wb.Checkpoint("inception_v3", tensors, 10, False, variant="keras")
    with pytest.raises(wb.WeightsMismatchError, match="timm"):
        wb.write(ckpt, tmp_path / "x.pth", "timm")
    assert not (tmp_path / "x.pth").exists()


# --- keras.applications --------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_apps_file(pool, tmp_path_factory):
    require("keras", "tensorflow")
    path = tmp_path_factory.mktemp("keras_apps") / "inception_v3.weights.h5"
    pool.request("keras-tensorflow", "seed_applications", out=str(path), seed=5, num_classes=10)
    return path


@pytest.mark.slow
def test_keras_applications_round_trip_is_lossless(keras_apps_file, tmp_path, room):
    run_cli("convert", keras_apps_file, tmp_path / "n", "--arch", "inception_v3", "--from", "keras-applications",
            "--quiet", check=True, fresh=True)
    cfg = json.loads((tmp_path / "n" / "config.json").read_text())
    assert (cfg["variant"], cfg["num_classes"], cfg["aux_logits"]) == ("keras", 10, False)
    ckpt = wb.read(tmp_path / "n")
    assert all(np.all(v == 1.0) for k, v in ckpt.tensors.items() if k.endswith(".bn.weight"))  # gamma filled with 1
    # keras.applications -> ours (neutral -> torch -> flax) -> keras.applications, bit-exact
    run_cli("convert", tmp_path / "n", tmp_path / "t.pth", "--quiet", check=True)
    run_cli("convert", tmp_path / "t.pth", tmp_path / "f.msgpack", "--arch", "inception_v3", "--quiet", check=True)
    run_cli("convert", tmp_path / "f.msgpack", tmp_path / "back.weights.h5", "--arch", "inception_v3",
            "--to", "keras-applications", "--variant", "keras", "--quiet", check=True, fresh=True)
    a, b = h5_datasets(keras_apps_file), h5_datasets(tmp_path / "back.weights.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # without --variant a .pth is the torchvision variant, whose padding keras.applications lacks
    proc = run_cli("convert", tmp_path / "t.pth", tmp_path / "x.weights.h5", "--arch", "inception_v3",
                   "--to", "keras-applications", fresh=True)
    assert proc.returncode == 5 and "padding" in proc.stderr and not (tmp_path / "x.weights.h5").exists()


def test_keras_applications_export_refuses_gamma_and_aux(tmp_path):
    require("keras")
    spec = model_spec("inception_v3", num_classes=10, aux_logits=False, variant="keras")
    tensors = {k: np.full(s, 0.5, np.float32) for k, s in canonical_shapes(spec).items()}
    wb.write(wb.Checkpoint("inception_v3", tensors, 10, False, variant="keras"), tmp_path / "g")
    proc = run_cli("convert", tmp_path / "g", tmp_path / "g.weights.h5", "--to", "keras-applications", fresh=True)
    assert proc.returncode == 5 and "gamma" in proc.stderr and not (tmp_path / "g.weights.h5").exists()


@pytest.mark.slow
def test_keras_applications_agrees_with_ours(pool, keras_apps_file, tmp_path):
    """The keras.applications checkpoint's own matrix: our five implementations built as the
    "keras" variant, plus keras.applications (tensorflow) itself, at 299 and an odd 307, eval and
    train. Also checks keras.applications' own count_params against the mapped count.

    Train-mode logits are held to the absolute bound only: Inception v3's train mode (batch
    statistics of 2 images, 8x8 maps) puts PyTorch fp32 itself 2.3e-5 relative from fp64 on these
    weights (measured), so any two frameworks, ours among themselves included, can sit ~5-9e-5
    apart relative to max|logit| ~ 1, just past the 5e-5 train bound."""
    from conformance.agreement.matrix import agreement, to_json

    require("tensorflow")
    assert pool.request("keras-tensorflow", "count_params", architecture="inception_v3")["count"] == KERAS_APPS_PARAMS
    r = to_json("inception_v3", *agreement("inception_v3", tmp_path / "w", pool, sizes=(299, 307),
                                           source=keras_apps_file, source_format="keras-applications"))
    assert not r["errors"], r["errors"]
    impls = {p["a"] for p in r["pairs"]} | {p["b"] for p in r["pairs"]}
    assert "keras-applications" in impls and "torchvision" not in impls and "timm" not in impls
    bad = [p for p in r["pairs"] if not p["ok"]
           and not ("train" in p["task"] and p["quantity"] == "logits" and p["max_abs"] <= 1e-4)]
    assert not bad, bad
    assert {p["task"] for p in r["pairs"]} == {"inception_v3-eval-299", "inception_v3-eval-307", "inception_v3-train-299"}
