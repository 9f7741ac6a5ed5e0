"""Blocks, shapes, padding arithmetic and parameter counts against published numbers."""
import math

import pytest
import torch

from impls.spec import ARCHITECTURES, model_spec
from impls.spec.layers import pool_pads
from impls.spec.tensors import canonical_shapes, is_parameter
from impls.spec.googlenet import inception_v1
from impls.torch_nn import build, create_model

# torchvision's documented parameter counts (GoogLeNet_Weights.IMAGENET1K_V1 meta: 6,624,904;
# with both aux heads, as torchvision builds it for training: 13,004,888).
PUBLISHED = {("googlenet", False): 6_624_904, ("googlenet", True): 13_004_888,
             # torchvision inception_v3 (Inception_V3_Weights meta: 27,161,264 with the aux head)
             ("inception_v3", False): 23_834_568, ("inception_v3", True): 27_161_264,
             # timm's inception_v4 / inception_resnet_v2 (no aux head: aux_logits is ignored)
             # bn_inception: Figure 5 of Ioffe & Szegedy 2015 by hand (test_models_timm_family.py)
             **{(a, aux): n for a, n in (("inception_v4", 42_679_816), ("inception_resnet_v2", 55_843_464),
                                         ("bn_inception", 11_285_224))
                for aux in (False, True)}}
TORCHVISION = ("googlenet", "inception_v3")

# GoogLeNet paper, Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) and input channels.
PAPER_TABLE = [
    (192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128),
]


def paper_param_count(aux: bool, num_classes=1000):
    """Hand formula from the paper's table: convs with bias, 5x5 in branch 3, LRN has no weights."""
    conv = lambda cin, cout, k: k * k * cin * cout + cout
    n = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    for cin, c1, r3, c3, r5, c5, pp in PAPER_TABLE:
        n += conv(cin, c1, 1) + conv(cin, r3, 1) + conv(r3, c3, 3) + conv(cin, r5, 1) + conv(r5, c5, 5) + conv(cin, pp, 1)
    n += 1024 * num_classes + num_classes
    if aux:  # two heads: 1x1 conv to 128, FC 2048 -> 1024, FC 1024 -> classes
        n += sum(conv(cin, 128, 1) + 2048 * 1024 + 1024 + 1024 * num_classes + num_classes for cin in (512, 528))
    return n


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_counts(arch, aux):
    expected = paper_param_count(aux) if arch == "googlenet_paper" else PUBLISHED[(arch, aux)]
    model = create_model(arch, aux_logits=aux)
    assert sum(p.numel() for p in model.parameters()) == expected
    spec_count = sum(math.prod(s) for k, s in canonical_shapes(model_spec(arch, aux_logits=aux)).items() if is_parameter(k))
    assert spec_count == expected


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("arch", [a for a in TORCHVISION if a in ARCHITECTURES])
def test_state_dict_equals_torchvision(arch, aux):
    import torchvision

    ours = create_model(arch, aux_logits=aux)
    peer = getattr(torchvision.models, arch)(weights=None, aux_logits=aux, init_weights=False)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in peer.state_dict().items()}
    ours.load_state_dict(peer.state_dict(), strict=True)
    peer.load_state_dict(ours.state_dict(), strict=True)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_canonical_names_are_torch_state_dict(arch):
    sd = create_model(arch).state_dict()
    torch_shapes = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert canonical_shapes(model_spec(arch)) == torch_shapes


def test_seed_001_block_keeps_resolution():
    # Seed 001: Inception(in=3, 64, 32, 64, 64, 96, 32) on 256x256 -> 256 channels at 256x256.
    block = build(inception_v1(3, 64, 32, 64, 64, 96, 32, batch_norm=False)).eval()
    assert block(torch.randn(1, 3, 256, 256)).shape == (1, 256, 256, 256)


def test_seed_004_block_channels():
    # Seed 004 / the paper's 3a: (192, 64, 96, 128, 16, 32, 32) -> 64 + 128 + 32 + 32 = 256 channels.
    block = build(inception_v1(192, 64, 96, 128, 16, 32, 32)).eval()
    assert block(torch.randn(2, 192, 28, 28)).shape == (2, 256, 28, 28)


@pytest.mark.parametrize("size", range(5, 40))
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 0), (3, 1, 1), (2, 2, 0), (3, 2, 1), (5, 3, 0)])
@pytest.mark.parametrize("ceil_mode", [True, False])
def test_pool_pads_match_torch(size, kernel, stride, padding, ceil_mode):
    before, after, out = pool_pads(size, kernel, stride, padding, ceil_mode)
    x = torch.randn(1, 1, size, size)
    ref = torch.nn.functional.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    assert ref.shape[-1] == out
    # Our explicit -inf padding plus a VALID pool reproduces torch's windows exactly.
    padded = torch.nn.functional.pad(x, (before, after, before, after), value=-math.inf)
    ours = torch.nn.functional.max_pool2d(padded, kernel, stride)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("arch", ["googlenet", "googlenet_paper"])
def test_train_mode_returns_named_tuple(arch):
    model = create_model(arch).train()
    out = model(torch.randn(2, 3, 224, 224))
    assert type(out).__name__ == "GoogLeNetOutputs"
    assert out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert all(o.shape == (2, 1000) for o in out)
    assert create_model(arch, aux_logits=False).train()(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
    assert model.eval()(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_transform_input_matches_torchvision():
    import torchvision

    peer = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False).eval()
    ours = create_model("googlenet", aux_logits=False, transform_input=True).eval()
    ours.load_state_dict(peer.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), peer(x), rtol=0, atol=1e-6)
