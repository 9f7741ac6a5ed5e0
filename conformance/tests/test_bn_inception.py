"""BN-Inception (Ioffe & Szegedy 2015, Figure 5) and seed article 001's Inception v2 block and
1xn / nx1 factorisation, against hand counts and the article's own code."""
import math

import pytest
import torch

from impls.spec import model_spec
from impls.spec.blocks import Branches, seq
from impls.spec.layers import AvgPool, ConvBlock
from impls.spec.tensors import node_tensors
from impls.torch_nn import build, create_model


# --- Seed article 001: the Inception v2 block and the 1xn / nx1 factorisation -------------------

def seed_001_block():
    """The article's v2 block as spec data: 192 -> 96 | 48 -> 3x3 64 | 64 -> 3x3 96 -> 3x3 96 |
    3x3 avg pool (count_include_pad=False) -> 64; every conv followed by BN (eps 0.001) and ReLU."""
    c = lambda cin, cout, k=1: ConvBlock(cin, cout, k, 1, k // 2, True, 1e-3)
    return Branches(192, (
        (("branch1", c(192, 96)),),
        (("branch2", seq(c(192, 48), c(48, 64, 3))),),
        (("branch3", seq(c(192, 64), c(64, 96, 3), c(96, 96, 3))),),
        (("branch4", seq(AvgPool(3, 1, 1, count_include_pad=False), c(192, 64))),),
    ))


class _SeedBasicConv2d(torch.nn.Module):
    """The article's code verbatim: Conv2d (with its default bias) + BatchNorm2d(eps=0.001) + ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, padding=0):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
        self.bn = torch.nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class _SeedInceptionv2(torch.nn.Module):
    def __init__(self):
        super().__init__()
        B, S = _SeedBasicConv2d, torch.nn.Sequential
        self.branch1 = B(192, 96, 1, 0)
        self.branch2 = S(B(192, 48, 1, 0), B(48, 64, 3, 1))
        self.branch3 = S(B(192, 64, 1, 0), B(64, 96, 3, 1), B(96, 96, 3, 1))
        self.branch4 = S(torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), B(192, 64, 1, 0))

    def forward(self, x):
        return torch.cat((self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)), 1)


def test_seed_001_v2_block_reproduced():
    spec = seed_001_block()
    assert spec.out_channels == 96 + 64 + 96 + 64 == 320
    ours, seed = build(spec), _SeedInceptionv2()
    assert all(m.eps == 1e-3 for m in ours.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # Same modules and names; the article's convs also carry a bias, which BN makes redundant:
    # BN(Wx + b) = BN'(Wx) with running_mean' = running_mean - b (eval) and exactly (train).
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in seed.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    sd = seed.state_dict()
    folded = {}
    for k, v in sd.items():
        if k.endswith("conv.bias"):
            continue
        if k.endswith("bn.running_mean"):
            v = v - sd[k[: -len("bn.running_mean")] + "conv.bias"]
        folded[k] = v
    assert set(folded) == set(ours.state_dict())
    ours.load_state_dict(folded, strict=True)
    x = torch.randn(2, 192, 32, 32, generator=g)
    with torch.no_grad():
        out = ours.eval()(x)
        assert out.shape == (2, 320, 32, 32)
        torch.testing.assert_close(out, seed.eval()(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.train()(x), seed.train()(x), rtol=1e-4, atol=1e-4)


def _conv_params(node):
    return sum(math.prod(s) for k, s in node_tensors(node, "x", {}).items() if k.endswith("conv.weight"))


@pytest.mark.parametrize("n,saving", [(3, 1 / 3), (5, 0.6), (7, 5 / 7)])
def test_seed_001_factorised_nxn_saving(n, saving):
    """n x n -> 1 x n then n x 1 (same channels, same receptive field): 2n C^2 weights instead of
    n^2 C^2, i.e. 1 - 2/n saved; the article's 'about 33 %' is n = 3."""
    C = 64
    full = ConvBlock(C, C, n, 1, n // 2)
    factorised = seq(ConvBlock(C, C, (1, n), 1, (0, n // 2)), ConvBlock(C, C, (n, 1), 1, (n // 2, 0)))
    assert 1 - _conv_params(factorised) / _conv_params(full) == pytest.approx(saving)
    x = torch.randn(1, C, 17, 17)
    with torch.no_grad():
        assert build(factorised).eval()(x).shape == build(full).eval()(x).shape == (1, C, 17, 17)
    # One impulse reaches the same n x n output window through both.
    conv = torch.nn.Conv2d(1, 1, (1, n), padding=(0, n // 2), bias=False)
    conv2 = torch.nn.Conv2d(1, 1, (n, 1), padding=(n // 2, 0), bias=False)
    for c in (conv, conv2):
        torch.nn.init.ones_(c.weight)
    impulse = torch.zeros(1, 1, 17, 17)
    impulse[0, 0, 8, 8] = 1
    with torch.no_grad():
        reach = conv2(conv(impulse))[0, 0] != 0
    assert reach.sum() == n * n and reach[8 - n // 2:8 + n // 2 + 1, 8 - n // 2:8 + n // 2 + 1].all()


# --- BN-Inception (Ioffe & Szegedy 2015, Figure 5) ---------------------------------------------

# Figure 5 rows as printed: (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool proj);
# 0 = absent (the stride-2 modules' 1x1 branch and pass-through pool).
FIGURE_5 = [(64, 64, 64, 64, 96, 32), (64, 64, 96, 64, 96, 64), (0, 128, 160, 64, 96, 0),
            (224, 64, 96, 96, 128, 128), (192, 96, 128, 96, 128, 128), (160, 128, 160, 128, 160, 128),
            (96, 128, 192, 160, 192, 128), (0, 128, 192, 192, 256, 0), (352, 192, 320, 160, 224, 128),
            (352, 192, 320, 192, 224, 128)]


def bn_inception_param_count(num_classes=1000):
    """By hand from Figure 5: every conv k*k*in*out weights plus BN gamma and beta (no conv bias);
    a module's input is the previous module's channel sum (pass-through pools keep theirs)."""
    conv = lambda cin, cout, k: k * k * cin * cout + 2 * cout
    n = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    cin = 192
    for c1, r3, c3, rd, cd, proj in FIGURE_5:
        n += (conv(cin, c1, 1) if c1 else 0) + conv(cin, r3, 1) + conv(r3, c3, 3) + conv(cin, rd, 1) \
            + conv(rd, cd, 3) + conv(cd, cd, 3) + (conv(cin, proj, 1) if proj else 0)
        cin = c1 + c3 + cd + (proj if proj else cin)
    assert cin == 1024
    return n + 1024 * num_classes + num_classes


def test_bn_inception_parameter_count_from_the_paper():
    assert bn_inception_param_count() == 11_285_224
    model = create_model("bn_inception")
    assert sum(p.numel() for p in model.parameters()) == bn_inception_param_count()
    assert sum(p.numel() for p in create_model("bn_inception", num_classes=10).parameters()) == \
        bn_inception_param_count(10)


def test_bn_inception_shapes_and_modules():
    from impls.spec.summary import summarize

    model = create_model("bn_inception").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
        assert model(torch.randn(1, 3, 199, 199)).shape == (1, 1000)
    rows = {r.name: r for r in summarize(model_spec("bn_inception"), (224, 224))}
    assert rows["maxpool2"].out_shape == (192, 28, 28)
    assert rows["inception3c"].out_shape == (576, 14, 14) and rows["inception4e"].out_shape == (1056, 7, 7)
    assert rows["inception5b"].out_shape == (1024, 7, 7)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(bns) == len(convs) and all(c.bias is None for c in convs) and all(b.eps == 1e-3 for b in bns)
    assert not any(isinstance(m, (torch.nn.LocalResponseNorm, torch.nn.Dropout)) and getattr(m, "p", 0)
                   for m in model.modules())
    # 5x5 replaced by two 3x3: no conv larger than 3x3 after the 7x7 stem conv
    assert max(max(c.kernel_size) for c in convs[1:]) == 3
    # inception3a is seed 001's module layout with Figure 5's channels
    assert set(dict(model.inception3a.named_children())) == {"branch1", "branch2", "branch3", "branch4"}
    assert "branch1" not in dict(model.inception3c.named_children())
