"""BN-Inception against its package-index peer, ``pretrainedmodels.bninception`` (Cadene's port of
yjxiong's Caffe model): our ``bn_inception`` variant "caffe" has its tensors (under our names, mapped
by ``weights_bridge.peers.pretrainedmodels``), its parameter count, its numbers and its settings (our preset)."""
import math

import pytest
import torch

import weights_bridge as wb
from conformance.compare.tolerances import within
from impls.spec import model_spec
from impls.spec.tensors import canonical_shapes, is_parameter
from impls.torch_nn import create_model
from weights_bridge import presets
from weights_bridge.extras import missing
from weights_bridge.peers.pretrainedmodels import peer_name

# Imported by the tests, not at collection: importing the package builds its zoo's modules (a
# ResNeXt-101 among them: 480 MB that every test process, parallel ones too, would hold).
pytestmark = pytest.mark.skipif(bool(missing(["pretrainedmodels"])), reason="needs pretrainedmodels")


def _package():
    import pretrainedmodels

    return pretrainedmodels

# sum(p.numel() for p in pretrainedmodels.bninception(pretrained=None).parameters()), 1000 classes.
BNINCEPTION_PARAMS = 11_295_240
DEFAULT_PARAMS = 11_285_224  # ours, by hand from Figure 5 (test_bn_inception.py)


def _peer(num_classes=1000):
    return _package().bninception(num_classes=num_classes, pretrained=None)


def _caffe(**kw):
    return create_model("bn_inception", variant="caffe", **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Seeded caffe-variant weights: our .pth and the bridge's pretrainedmodels export of it."""
    work = tmp_path_factory.mktemp("bninception")
    from conformance.frameworks.torch_nn.seed import randomize_

    model = randomize_(_caffe(num_classes=10), seed=4, calibration_size=224)
    torch.save(model.state_dict(), work / "ours.pth")
    wb.convert(work / "ours.pth", work / "peer.pth", "bn_inception", dst_format="pretrainedmodels")
    return work


def _loaded(files):
    ours, peer = _caffe(num_classes=10), _peer(10)
    ours.load_state_dict(torch.load(files / "ours.pth", weights_only=True), strict=True)
    peer.load_state_dict(torch.load(files / "peer.pth", weights_only=True), strict=True)
    return ours, peer


def test_parameter_count_is_the_peers():
    assert sum(p.numel() for p in _peer().parameters()) == BNINCEPTION_PARAMS
    assert sum(p.numel() for p in _caffe().parameters()) == BNINCEPTION_PARAMS
    spec = model_spec("bn_inception", variant="caffe")
    assert sum(math.prod(s) for k, s in canonical_shapes(spec).items() if is_parameter(k)) == BNINCEPTION_PARAMS
    # The Caffe model is Figure 5's plus one bias per conv output channel (its 69 convs: 10,016 channels).
    convs = [m for m in _peer().modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 69 and DEFAULT_PARAMS + sum(c.out_channels for c in convs) == BNINCEPTION_PARAMS


def test_every_tensor_maps_one_to_one_with_its_shape():
    peer = {k: tuple(v.shape) for k, v in _peer().state_dict().items() if not k.endswith("num_batches_tracked")}
    ours = canonical_shapes(model_spec("bn_inception", variant="caffe"))
    mapped = {peer_name(k): s for k, s in ours.items()}
    assert len(mapped) == len(ours) == len(peer) == 416
    assert mapped == peer
    assert list(mapped) == list(peer)  # and in the peer's registration order
    assert peer_name("inception3c.branch3.2.bn.running_var") == "inception_3c_double_3x3_2_bn.running_var"


def test_variant_is_the_caffe_network():
    peer = _peer()
    bns = [m for m in peer.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {m.eps for m in bns} == {1e-5} and all(m.momentum == 0.1 for m in bns)
    ours = _caffe()
    assert {m.eps for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}
    assert all(m.bias is not None for m in ours.modules() if isinstance(m, torch.nn.Conv2d))
    pair = torch.nn.modules.utils._pair
    pool = lambda m: (pair(m.kernel_size), pair(m.stride), pair(m.padding), m.ceil_mode)
    assert pool(ours.inception3c.branch4) == pool(peer.inception_3c_pool) == ((3, 3), (2, 2), (0, 0), True)
    assert pool(ours.inception4e.branch4) == pool(peer.inception_4e_pool)
    assert ours.inception3a.branch4[0].count_include_pad is peer.inception_3a_pool.count_include_pad is True
    assert model_spec("bn_inception", variant="caffe").config.mean == tuple(
        _package().pretrained_settings["bninception"]["imagenet"]["mean"])


def test_strict_load_both_ways_and_round_trip(files, tmp_path):
    ours, peer = _loaded(files)  # our export loads into pretrainedmodels strict
    torch.save(peer.state_dict(), tmp_path / "from_peer.pth")  # as a pretrainedmodels user saves it
    wb.convert(tmp_path / "from_peer.pth", tmp_path / "back.pth", "bn_inception", src_format="pretrainedmodels")
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    ours.load_state_dict(back, strict=True)
    original = torch.load(files / "ours.pth", weights_only=True)
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in original)
    neutral = wb.read(tmp_path / "from_peer.pth", "pretrainedmodels", "bn_inception")
    assert (neutral.variant, neutral.num_classes, neutral.aux_logits) == ("caffe", 10, False)


def test_eval_outputs_agree(files):
    ours, peer = _loaded(files)
    ours.eval(), peer.eval()
    for size in (224, 227):  # the peer's native size and an odd one (it runs at 223..230)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        captured = {}
        with torch.no_grad():
            out, _ = ours.forward_stages(x, capture=captured)
            features = peer.features(x)
            ref = peer.logits(features)
        assert torch.equal(captured["inception5b"], features), size  # the trunk: bit-identical
        # The head: global mean vs the peer's AvgPool2d(7), the same 49 numbers summed in another order.
        d, m = float((out - ref).abs().max()), float(ref.abs().max())
        assert out.shape == (1, 10) and within(d, m, "eval"), (size, d, m)


@pytest.mark.slow  # ~10 s; the slow matrix below checks train mode too, within tolerance
def test_train_mode_agrees(files):
    ours, peer = _loaded(files)
    ours.train(), peer.train()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out, ref = ours(x), peer(x)
    d, m = float((out - ref).abs().max()), float(ref.abs().max())
    assert within(d, m, "train"), (d, m)
    sd = peer.state_dict()  # BN running statistics after the step: identical (same trunk arithmetic)
    for k, v in ours.state_dict().items():
        assert torch.equal(v, sd[peer_name(k)]), k


def test_peer_fails_alike_where_the_branches_do_not_line_up():
    """Caffe's unpadded ceil-mode pool and the padded 3x3/2 convs beside it agree in size only for
    even module inputs: the peer and our variant run at 223..230 (224 and 227 above) and fail
    alike just outside (231: 3c's input is 29, its convs give 15, its pool 14)."""
    ours, peer = _caffe(num_classes=10).eval(), _peer(10).eval()
    with torch.no_grad():
        for model in (ours, peer):
            with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
                model(torch.zeros(1, 3, 231, 231))


def test_refusals_name_the_tensor(files, tmp_path):
    sd = torch.load(files / "peer.pth", weights_only=True)
    bad = dict(sd, extra_layer_bn=torch.zeros(3))
    torch.save(bad, tmp_path / "extra.pth")
    with pytest.raises(wb.WeightsMismatchError, match="'extra_layer_bn'.*no counterpart"):
        wb.read(tmp_path / "extra.pth", "pretrainedmodels", "bn_inception")
    bad = dict(sd)
    bad["inception_4a_pool_proj.weight"] = torch.zeros(128, 576, 3, 3)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(wb.WeightsMismatchError, match=r"'inception_4a_pool_proj.weight'.*\(128, 576, 3, 3\)"):
        wb.read(tmp_path / "shape.pth", "pretrainedmodels", "bn_inception")
    del bad["inception_4a_pool_proj.weight"]
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(wb.WeightsMismatchError, match="missing tensor 'inception_4a_pool_proj.weight'"):
        wb.read(tmp_path / "missing.pth", "pretrainedmodels", "bn_inception")
    # A caffe file (conv biases) claimed as the default variant.
    with pytest.raises(wb.WeightsMismatchError, match="'caffe'-variant checkpoint, not 'default'"):
        wb.read(files / "ours.pth", "torch", "bn_inception", variant="default")
    seeded = create_model("bn_inception", num_classes=10).state_dict()  # the paper's variant: not the peer's
    torch.save(seeded, tmp_path / "paper.pth")
    with pytest.raises(wb.WeightsMismatchError, match="'default'-variant bn_inception checkpoint is not"):
        wb.convert(tmp_path / "paper.pth", tmp_path / "x.pth", "bn_inception", dst_format="pretrainedmodels")
    with pytest.raises(wb.WeightsMismatchError, match="not 'inception_v4'"):
        wb.read(files / "peer.pth", "pretrainedmodels", "inception_v4")
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.slow
def test_matrix_with_the_peer(pool, tmp_path):
    """torch, flax, keras on three backends and pretrainedmodels on one caffe-variant checkpoint,
    eval at 224 and 227 and train at 224: every pair within the stated tolerances."""
    from conformance.agreement.matrix import agreement

    results, errors, _, _ = agreement("bn_inception", tmp_path, pool, variant="caffe")
    assert not errors, errors
    impls = {r.a for r in results} | {r.b for r in results}
    assert "pretrainedmodels" in impls and "flax" in impls
    assert {r.task for r in results} == {"bn_inception-eval-224", "bn_inception-eval-227", "bn_inception-train-224"}
    bad = [r for r in results if not r.ok]
    assert not bad, bad


def test_pretrainedmodels_preset_is_its_settings():
    s = _package().pretrained_settings["bninception"]["imagenet"]
    facts = presets.find("pretrainedmodels:imagenet", "bn_inception").facts()
    assert (facts["input_space"], facts["input_size"], facts["mean"], facts["std"]) == \
        (s["input_space"], s["input_size"], s["mean"], s["std"])
    assert s["input_range"] == [0, 255] and s["num_classes"] == 1000 and facts["label_offset"] == 0
