"""Inception-v4 and Inception-ResNet-v2 against timm: state_dict, strict loading, bit-identical
PyTorch outputs, published parameter counts."""
import math

import pytest
import torch

from impls.spec import model_spec
from impls.spec.tensors import canonical_shapes, is_parameter
from impls.torch_nn import create_model

timm = pytest.importorskip("timm")

# timm's numbers (sum of parameters of timm.create_model(name)), equal to the TF-slim release's.
PUBLISHED = {"inception_v4": 42_679_816, "inception_resnet_v2": 55_843_464}
ARCHS = tuple(PUBLISHED)


def _pair(arch, **kw):
    torch.manual_seed(0)
    peer = timm.create_model(arch, pretrained=False, **kw)
    ours = create_model(arch, **kw)
    ours.load_state_dict(peer.state_dict(), strict=True)
    return ours, peer


@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_equals_timm(arch):
    peer = timm.create_model(arch, pretrained=False)
    ours = create_model(arch)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in peer.state_dict().items()]
    ours.load_state_dict(peer.state_dict(), strict=True)
    peer.load_state_dict(ours.state_dict(), strict=True)
    shapes = {k: tuple(v.shape) for k, v in peer.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert canonical_shapes(model_spec(arch)) == shapes


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_counts(arch):
    assert sum(p.numel() for p in create_model(arch).parameters()) == PUBLISHED[arch]
    spec = model_spec(arch)
    assert sum(math.prod(s) for k, s in canonical_shapes(spec).items() if is_parameter(k)) == PUBLISHED[arch]
    # num_classes changes only the classifier: 1536 * n + n
    n = 10
    expected = PUBLISHED[arch] - 1537 * 1000 + 1537 * n
    assert sum(p.numel() for p in create_model(arch, num_classes=n).parameters()) == expected


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_outputs_bit_identical_to_timm(arch):
    ours, peer = _pair(arch)
    ours.eval(), peer.eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for size in (299, 275):  # 275: odd, every valid conv and 3x3/2 pool floors differently
            x = torch.randn(1, 3, size, size, generator=g)
            out = ours(x)
            assert out.shape == (1, 1000)
            assert torch.equal(out, peer(x)), size


@pytest.mark.parametrize("arch", ARCHS)
def test_train_mode_matches_timm(arch):
    """Batch statistics, BN running-statistic updates and dropout 0, as timm's."""
    ours, peer = _pair(arch, num_classes=7)
    ours.train(), peer.train()
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = ours(x)
        assert out.shape == (2, 7)
        assert torch.equal(out, peer(x))
    sd = peer.state_dict()
    for k, v in ours.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("arch", ARCHS)
def test_dropout_is_timm_drop_rate(arch):
    spec = model_spec(arch)
    assert dict(spec.stages)["head_drop"].rate == 0.0  # timm's default drop_rate
    assert dict(model_spec(arch, dropout=0.2).stages)["head_drop"].rate == 0.2
    assert not spec.aux_heads and spec.config.has_aux is False


def test_residual_scales_and_final_block8():
    """Block35 x 0.17, Block17 x 0.10, Block8 x 0.20 with ReLU; the final block8 scale 1, no ReLU;
    the up-projections are bare 1x1 convs with bias, as timm's."""
    stages = dict(model_spec("inception_resnet_v2").stages)
    blocks = {name: [b for _, b in stages[name].steps] for name in ("repeat", "repeat_1", "repeat_2")}
    assert {b.scale for b in blocks["repeat"]} == {0.17} and len(blocks["repeat"]) == 10
    assert {b.scale for b in blocks["repeat_1"]} == {0.10} and len(blocks["repeat_1"]) == 20
    assert {b.scale for b in blocks["repeat_2"]} == {0.20} and len(blocks["repeat_2"]) == 9
    assert all(b.relu for name in blocks for b in blocks[name])
    assert stages["block8"].scale == 1.0 and stages["block8"].relu is False
    peer = timm.create_model("inception_resnet_v2", pretrained=False)
    assert peer.block8.relu is None and peer.repeat_2[0].relu is not None
    assert peer.block8.conv2d.bias is not None
