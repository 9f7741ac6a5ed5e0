"""keras.applications.InceptionResNetV2 checkpoints: our ``inception_resnet_v2`` variant "keras".

Its parameter count mapped onto ours, the dataflow mapping of its layers onto timm's canonical
names (checked against the names keras.applications gives its layers), export refusals, the
lossless round trip keras.applications -> ours -> keras.applications (.weights.h5 and .keras),
and agreement of keras.applications (tensorflow) with our implementations on its weights.
Keras runs only in subprocesses (see conftest)."""
import json
import math

import numpy as np
import pytest

import weights_bridge as wb
from impls.spec import model_spec
from impls.spec.layers import ConvBlock
from impls.spec.tensors import canonical_shapes, is_parameter

from .helpers import h5_datasets, own_process, require, run_cli, run_python

ARCH = "inception_resnet_v2"
KERAS_APPS_PARAMS = 55_873_736  # keras.applications.InceptionResNetV2().count_params(): include_top, 1000 classes
TIMM_PARAMS = 55_843_464  # sum of timm.create_model("inception_resnet_v2") parameters
# conv2d_bn calls in keras' inception_resnet_v2.py, each one BatchNormalization: stem 5, mixed_5b 7,
# 10 block35 x 6, mixed_6a 4, 20 block17 x 4, mixed_7a 7, 10 block8 x 4, conv_7b 1.
KERAS_BN_LAYERS = 5 + 7 + 10 * 6 + 4 + 20 * 4 + 7 + 10 * 4 + 1


def _convs(layer):
    if isinstance(layer, ConvBlock):
        return [layer]
    return [c for _, child in layer.children() for c in _convs(child)]


def test_keras_irv2_count_maps_onto_ours():
    """Keras counts BN moving statistics as weights and has no gamma:
    keras = ours - sum(gamma) + sum(moving_mean + moving_var) = ours + sum(BN channels)."""
    shapes = canonical_shapes(model_spec(ARCH, variant="keras"))
    ours = sum(math.prod(s) for k, s in shapes.items() if is_parameter(k))
    assert ours == TIMM_PARAMS
    bns = [s for k, s in shapes.items() if k.endswith(".bn.weight")]
    assert len(bns) == KERAS_BN_LAYERS
    gamma = sum(s[0] for s in bns)
    stats = sum(math.prod(s) for k, s in shapes.items() if k.endswith((".running_mean", ".running_var")))
    assert gamma == 30_272 and stats == 2 * gamma
    assert ours - gamma + stats == ours + gamma == KERAS_APPS_PARAMS


def test_keras_variant_is_timm_layers_without_gamma():
    """keras.applications' IRv2 pads as torch does (no 'same' at stride 2: every stride-2 conv and
    pool is 'valid'), so the variant differs from timm's only in a checkpoint fact, BN's gamma."""
    default, keras = model_spec(ARCH), model_spec(ARCH, variant="keras")
    assert keras.stages == default.stages and canonical_shapes(keras) == canonical_shapes(default)
    assert keras.config.bn_scale is False and default.config.bn_scale is True
    convs = [c for _, stage in keras.stages for c in _convs(stage)]
    assert len(convs) == KERAS_BN_LAYERS
    for c in convs:
        (kh, kw), (ph, pw) = c.kernel_size, c.padding
        if c.stride != (1, 1):
            assert (ph, pw) == (0, 0), c  # Keras 'valid'
        else:
            assert (ph, pw) in ((0, 0), ((kh - 1) // 2, (kw - 1) // 2)), c  # 'valid' or symmetric 'same'
    with pytest.raises(ValueError, match="variant"):
        model_spec("inception_v4", variant="keras")
    import torch

    from impls.torch_nn import create_model

    with torch.device("meta"):  # structure only: no 55M-parameter init
        assert create_model(ARCH, num_classes=10, variant="keras").state_dict().keys() == \
            create_model(ARCH, num_classes=10).state_dict().keys()


def _tensors(variant, gamma):
    spec = model_spec(ARCH, num_classes=10, variant=variant)
    t = {k: np.full(s, 0.5, np.float32) for k, s in canonical_shapes(spec).items()}
    t.update({k: np.full(v.shape, gamma, np.float32) for k, v in t.items() if k.endswith(".bn.weight")})
    return wb.Checkpoint(ARCH, t, 10, False, variant=variant)


def test_keras_irv2_export_refuses_gamma():
    """keras.applications' BN has no gamma: a checkpoint whose gamma is not exactly 1 (any timm
    one) has no keras.applications form and is refused, before Keras builds anything (the CLI's
    exit 5 is checked in the slow round trip). Gamma 1 in either variant is the same network."""
    from weights_bridge.peers.keras_applications import check_exportable  # imports no keras

    for variant in ("keras", "default"):
        with pytest.raises(wb.WeightsMismatchError, match="InceptionResNetV2's BN has no gamma"):
            check_exportable(_tensors(variant, 0.5), "x")
        check_exportable(_tensors(variant, 1.0), "x")


MAPPING_PROBE = r"""
import json
import numpy as np
from weights_bridge.peers import keras_applications as ka

model = ka.build(10, 75, "inception_resnet_v2")
rng = np.random.default_rng(0)
for v in model.weights:
    v.assign(rng.standard_normal(v.shape, dtype=np.float32))
before = [np.array(v.numpy()) for v in model.weights]
ckpt = ka.to_checkpoint(model, "probe", architecture="inception_resnet_v2")
t, L = ckpt.tensors, {l.name: l for l in model.layers}
oihw = lambda k: np.transpose(k.numpy(), (3, 2, 0, 1))
# keras.applications' own layer names -> timm's canonical names
checks = {name: bool(np.array_equal(t[f"{ours}.weight"], oihw(L[name].kernel))
                     and np.array_equal(t[f"{ours}.bias"], L[name].bias.numpy()))
          for name, ours in [("block35_1_conv", "repeat.0.conv2d"), ("block35_10_conv", "repeat.9.conv2d"),
                             ("block17_1_conv", "repeat_1.0.conv2d"), ("block17_20_conv", "repeat_1.19.conv2d"),
                             ("block8_9_conv", "repeat_2.8.conv2d"), ("block8_10_conv", "block8.conv2d")]}
bn = L["conv_7b_bn"]
checks["conv_7b"] = bool(np.array_equal(t["conv2d_7b.conv.weight"], oihw(L["conv_7b"].kernel))
                         and np.array_equal(t["conv2d_7b.bn.bias"], bn.beta.numpy())
                         and np.array_equal(t["conv2d_7b.bn.running_mean"], bn.moving_mean.numpy())
                         and np.array_equal(t["conv2d_7b.bn.running_var"], bn.moving_variance.numpy()))
checks["predictions"] = bool(np.array_equal(t["classif.weight"], L["predictions"].kernel.numpy().T))
first = next(l for l in model.layers if type(l).__name__ == "Conv2D")
checks["first conv"] = bool(np.array_equal(t["conv2d_1a.conv.weight"], oihw(first.kernel)))
gamma_ones = all(bool(np.all(v == 1.0)) for k, v in t.items() if k.endswith(".bn.weight"))
for v in model.weights:
    v.assign(np.zeros(v.shape, "float32"))
ka.load_into(model, ckpt, "probe")
back = all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))
print(json.dumps({"checks": checks, "gamma_ones": gamma_ones, "back": back, "n_tensors": len(t),
                  "n_keras": len(model.weights), "variant": ckpt.variant, "aux": ckpt.aux_logits}))
"""


def test_keras_irv2_mapping_by_dataflow(pool):
    """The walker maps layers by dataflow, never by name; keras.applications' names (block35_1_conv,
    conv_7b, predictions, ...) must nonetheless land on timm's tensors, and assigning the
    checkpoint back restores every Keras variable bit for bit. Its Keras process (1.4 GB) is
    admitted as a pool request of that size: beside the other test process's data-parallel
    step, which runs alone, it made the whole run's peak (7.40 GiB)."""
    require("keras", "tensorflow")
    with own_process(pool, need=3 * 2**29):
        r = json.loads(run_python(MAPPING_PROBE).strip().splitlines()[-1])
    assert r["checks"] and all(r["checks"].values()), r["checks"]
    assert r["gamma_ones"] and r["back"] and (r["variant"], r["aux"]) == ("keras", False)
    # ours = Keras' variables (4 per conv_bn, 2 per biased conv and Dense) + one gamma per BN
    assert r["n_tensors"] == r["n_keras"] + KERAS_BN_LAYERS


# --- heavy: real files through the CLI, and the agreement matrix -------------------------------

@pytest.fixture(scope="module")
def keras_irv2_file(pool, tmp_path_factory):
    require("keras", "tensorflow")
    path = tmp_path_factory.mktemp("keras_irv2") / "inception_resnet_v2.weights.h5"
    pool.request("keras-tensorflow", "seed_applications", out=str(path), seed=7, num_classes=10, architecture=ARCH)
    return path


@pytest.mark.slow
def test_keras_irv2_round_trip_is_lossless(keras_irv2_file, tmp_path, room):
    run_cli("convert", keras_irv2_file, tmp_path / "n", "--arch", ARCH, "--from", "keras-applications",
            "--quiet", check=True, fresh=True)
    cfg = json.loads((tmp_path / "n" / "config.json").read_text())
    assert (cfg["architecture"], cfg["variant"], cfg["num_classes"], cfg["aux_logits"]) == (ARCH, "keras", 10, False)
    ckpt = wb.read(tmp_path / "n")
    assert all(np.all(v == 1.0) for k, v in ckpt.tensors.items() if k.endswith(".bn.weight"))
    # keras.applications -> neutral -> torch -> flax -> keras.applications, bit-exact. A .pth does
    # not record the variant; IRv2's default variant with gamma 1 is the same network, so it exports.
    run_cli("convert", tmp_path / "n", tmp_path / "t.pth", "--quiet", check=True)
    run_cli("convert", tmp_path / "t.pth", tmp_path / "f.msgpack", "--arch", ARCH, "--quiet", check=True)
    run_cli("convert", tmp_path / "f.msgpack", tmp_path / "back.weights.h5", "--arch", ARCH,
            "--to", "keras-applications", "--quiet", check=True, fresh=True)
    a, b = h5_datasets(keras_irv2_file), h5_datasets(tmp_path / "back.weights.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # the whole-model .keras form (CustomScaleLayer and all) through load_model(safe_mode=True)
    run_cli("convert", tmp_path / "n", tmp_path / "m.keras", "--to", "keras-applications", "--quiet", check=True, fresh=True)
    run_cli("convert", tmp_path / "m.keras", tmp_path / "n2", "--arch", ARCH, "--from", "keras-applications",
            "--quiet", check=True, fresh=True)
    again = wb.read(tmp_path / "n2")
    assert again.tensors.keys() == ckpt.tensors.keys()
    assert all(np.array_equal(again.tensors[k], v) for k, v in ckpt.tensors.items())
    # gamma != 1 (a timm checkpoint): exit 5, nothing written
    ckpt.tensors.update({k: v * np.float32(0.5) for k, v in ckpt.tensors.items() if k.endswith(".bn.weight")})
    ckpt.variant = "default"
    wb.write(ckpt, tmp_path / "g")
    proc = run_cli("convert", tmp_path / "g", tmp_path / "g.weights.h5", "--to", "keras-applications", fresh=True)
    assert proc.returncode == 5 and "gamma" in proc.stderr and "InceptionResNetV2" in proc.stderr
    assert not (tmp_path / "g.weights.h5").exists()


@pytest.mark.slow
def test_keras_irv2_agrees_with_ours(pool, keras_irv2_file, tmp_path):
    """keras.applications InceptionResNetV2 (tensorflow) on its own file against two of our
    implementations in other frameworks, torch and flax, built as the "keras" variant holding the
    converted weights, eval at 299 and an odd 277, and train mode at 299; plus keras' own
    count_params against the mapped count. The "keras" variant builds the default network (it
    differs only in a checkpoint fact: test_keras_variant_is_timm_layers_without_gamma), on which
    test_agreement.py runs all five of ours; the conversions are bit-exact (the round trip above)."""
    from conformance.agreement.matrix import agreement, to_json

    assert pool.request("keras-tensorflow", "count_params", architecture=ARCH)["count"] == KERAS_APPS_PARAMS
    ours = ["torch", "flax"]
    r = to_json(ARCH, *agreement(ARCH, tmp_path / "w", pool, impls=ours + ["keras-applications"], sizes=(299, 277),
                                 source=keras_irv2_file, source_format="keras-applications"))
    assert not r["errors"], r["errors"]
    pairs = r["pairs"]
    impls = {p["a"] for p in pairs} | {p["b"] for p in pairs}
    assert impls == {"keras-applications", *ours}
    assert {p["task"] for p in pairs} == {f"{ARCH}-eval-299", f"{ARCH}-eval-277", f"{ARCH}-train-299"}
    peer = [p for p in pairs if "keras-applications" in (p["a"], p["b"])]
    assert any("torch" in (p["a"], p["b"]) for p in peer)
    bad = [p for p in pairs if not p["ok"]]
    assert not bad, bad
