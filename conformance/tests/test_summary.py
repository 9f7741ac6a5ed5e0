"""impls.spec.summary: seed hand calculations, published parameter counts, and torch's own
shapes and FLOP counter. The expected numbers are the seeds' and the papers', typed in; the
measured ones come from summary.py applied to spec layers."""
import pytest

from impls.spec import model_spec
from impls.spec.googlenet import inception_v1
from impls.spec.layers import ConvBlock, Linear, MaxPool
from impls.spec.summary import format_table, layer_cost, summarize
from impls.spec.tensors import canonical_shapes, is_parameter


def conv(cin, cout, k=1):
    """A stride-1 'same' conv as the seeds draw it. batch_norm=False, and the seeds count
    weights only, so costs below are taken with layer_cost(..., biases=False)."""
    return ConvBlock(cin, cout, k, 1, k // 2, batch_norm=False)


def cost(spec, in_shape):
    return layer_cost(spec, in_shape, biases=False)


# --- seed 002: Inception 3a on 28x28x192, weights only ---------------------------------

def test_seed002_inception3a_weights_without_reductions():
    # The naive module's pool branch has no conv, so it has no weights; the seed counts
    # (1x1x192x64) + (3x3x192x128) + (5x5x192x32).
    branches = [conv(192, 64, 1), conv(192, 128, 3), conv(192, 32, 5)]
    costs = [cost(b, (192, 28, 28)) for b in branches]
    assert [s for s, _, _ in costs] == [(64, 28, 28), (128, 28, 28), (32, 28, 28)]
    assert 1 * 1 * 192 * 64 + 3 * 3 * 192 * 128 + 5 * 5 * 192 * 32 == 387_072
    assert sum(p for _, p, _ in costs) == 387_072


def test_seed002_inception3a_weights_with_reductions():
    # The seed's figure (b): the paper's 3a, pool projection included.
    block = inception_v1(192, 64, 96, 128, 16, 32, 32, branch3_kernel=5, batch_norm=False)
    shape, params, _ = cost(block, (192, 28, 28))
    assert shape == (block.out_channels, 28, 28) == (256, 28, 28)
    assert params == 163_328
    # the same count with biases: one per output channel of each of the six convs
    assert layer_cost(block, (192, 28, 28))[1] == 163_328 + 64 + 96 + 128 + 16 + 32 + 32


# --- seeds 004 and 003: a conv alone and behind a 1x1 reduction --------------------------
# Seed 004: 5x5 conv, 48 filters, on 14x14x480. Seed 003: 3x3 conv 192 -> 256 on 32x32; the
# seed's code leaves conv3 unpadded and writes an extra x32 in its product; with 'same' padding
# (output 32x32) its totals are the ones below. Each expected count is the seed's hand formula.
SEED_CASES = {
    "seed004 5x5": (lambda: conv(480, 48, 5), (480, 14, 14), (48, 14, 14),
                    14 * 14 * 48 * 5 * 5 * 480, 112_896_000),
    "seed004 5x5 after 1x1": (lambda: (conv(480, 16, 1), conv(16, 48, 5)), (480, 14, 14), (48, 14, 14),
                              14 * 14 * 16 * 480 + 14 * 14 * 48 * 5 * 5 * 16, 5_268_480),
    "seed003 3x3": (lambda: conv(192, 256, 3), (192, 32, 32), (256, 32, 32),
                    256 * 192 * 32 * 32 * 3 * 3, 452_984_832),
    "seed003 3x3 after 1x1": (lambda: (conv(192, 96, 1), conv(96, 256, 3)), (192, 32, 32), (256, 32, 32),
                              192 * 32 * 32 * 96 + 32 * 32 * 3 * 3 * 96 * 256, 245_366_784),
}


@pytest.mark.parametrize("case", SEED_CASES)
def test_seed_multiplications(case):
    layers, in_shape, out_shape, formula, published = SEED_CASES[case]
    shape, _, macs = cost(layers(), in_shape)
    assert shape == out_shape
    assert macs == formula == published


# --- whole models: parameters -----------------------------------------------------------

def total(rows, eval_only=False):
    name = "total (eval)" if eval_only and rows[-1].name == "total (eval)" else "total"
    return next(r for r in rows if r.name == name)


@pytest.mark.parametrize("aux, expected", [(True, 13_004_888), (False, 6_624_904)])
def test_googlenet_params_match_torchvision(aux, expected):
    # torchvision's published counts for googlenet(aux_logits=True/False), weights=None.
    assert total(summarize(model_spec("googlenet", aux_logits=aux))).params == expected


# GoogLeNet paper (Szegedy et al. 2014), Table 1:
# in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
PAPER_TABLE = [
    (192, 64, 96, 128, 16, 32, 32),      # 3a
    (256, 128, 128, 192, 32, 96, 64),    # 3b
    (480, 192, 96, 208, 16, 48, 64),     # 4a
    (512, 160, 112, 224, 24, 64, 64),    # 4b
    (512, 128, 128, 256, 24, 64, 64),    # 4c
    (512, 112, 144, 288, 32, 64, 64),    # 4d
    (528, 256, 160, 320, 32, 128, 128),  # 4e
    (832, 256, 160, 320, 32, 128, 128),  # 5a
    (832, 384, 192, 384, 48, 128, 128),  # 5b
]


def paper_params(aux):
    """The paper's net, counted by hand: biased convs, no BN, real 5x5 kernels."""
    def convp(cin, cout, k=1):
        return k * k * cin * cout + cout

    def inception(c, a, r3, b, r5, d, p):
        return convp(c, a) + convp(c, r3) + convp(r3, b, 3) + convp(c, r5) + convp(r5, d, 5) + convp(c, p)

    def fc(i, o):
        return i * o + o

    n = convp(3, 64, 7) + convp(64, 64) + convp(64, 192, 3)
    n += sum(inception(*row) for row in PAPER_TABLE)
    n += fc(1024, 1000)
    if aux:  # fed by 4a (512 ch) and 4d (528 ch): 1x1 conv 128, FC 128*4*4 -> 1024 -> 1000
        n += sum(convp(c, 128) + fc(128 * 4 * 4, 1024) + fc(1024, 1000) for c in (512, 528))
    return n


@pytest.mark.parametrize("aux", [True, False])
def test_googlenet_paper_params_match_table1(aux):
    assert total(summarize(model_spec("googlenet_paper", aux_logits=aux))).params == paper_params(aux)


@pytest.mark.parametrize("arch", ["googlenet", "googlenet_paper"])
def test_params_agree_with_canonical_tensor_table(arch):
    spec = model_spec(arch)
    expected = 0
    for name, shape in canonical_shapes(spec).items():
        if is_parameter(name):
            n = 1
            for d in shape:
                n *= d
            expected += n
    assert total(summarize(spec)).params == expected


# --- layer rules ------------------------------------------------------------------------

def test_ceil_mode_pool_and_linear_flatten():
    # 112 -> ceil((112 - 3) / 2) + 1 = 56 with ceil_mode; floor would give 55.
    assert layer_cost(MaxPool(3, 2, 0, ceil_mode=True), (64, 112, 112)) == ((64, 56, 56), 0, 0)
    assert layer_cost(MaxPool(3, 2, 0, ceil_mode=False), (64, 112, 112)) == ((64, 55, 55), 0, 0)
    assert layer_cost(Linear(128 * 4 * 4, 10), (128, 4, 4)) == ((10,), 2048 * 10 + 10, 2048 * 10)
    with pytest.raises(ValueError):
        layer_cost(Linear(2048, 10), (128, 3, 3))
    with pytest.raises(ValueError):
        layer_cost(conv(64, 8), (32, 8, 8))


def test_unknown_layer_type_is_a_type_error():
    class Mystery:
        pass

    with pytest.raises(TypeError, match="Mystery"):
        layer_cost(Mystery(), (3, 8, 8))
    with pytest.raises(TypeError, match="Mystery"):
        layer_cost((conv(3, 8), Mystery()), (3, 8, 8))


def test_format_table():
    rows = summarize(model_spec("googlenet"))
    text = format_table(rows)
    assert "inception3a" in text and "aux1" in text and "13,004,888" in text
    assert len(text.splitlines()) == len(rows) + 3  # header, its rule, the rule above totals


# --- cross-checks against the torch model -------------------------------------------------

@pytest.mark.parametrize("arch, size", [("googlenet", (224, 224)), ("googlenet", (199, 199)),
                                        ("googlenet", (224, 171)), ("googlenet_paper", (224, 224))])
def test_stage_shapes_and_macs_match_torch(arch, size):
    """Every stage's (and, in train mode, every aux head's) output shape equals torch's; so
    do its MACs, as FlopCounterMode's FLOPs / 2 (it counts a multiply-add as 2 FLOPs, only
    for conv/matmul: BN, pools, ReLU, LRN cost 0 there as here)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    import impls.torch_nn as T

    torch.manual_seed(0)
    model = getattr(T, arch)().train()  # train mode runs the aux heads too
    x, capture = torch.randn(2, 3, *size), {}
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        model.forward_stages(x, capture=capture)
        with counter:  # per-module names are relative to the module called, so call the model
            model(x)
    flops = counter.get_flop_counts()
    prefix = type(model).__name__
    rows = [r for r in summarize(model.spec, size) if not r.name.startswith("total")]
    assert [r.name for r in rows] == list(capture)
    for r in rows:
        assert tuple(capture[r.name].shape[1:]) == r.out_shape, r.name
        assert sum(flops.get(f"{prefix}.{r.name}", {}).values()) == 2 * 2 * r.macs, r.name  # batch of 2


@pytest.mark.parametrize("arch", ["googlenet", "googlenet_paper"])
def test_eval_total_macs_match_flop_counter(arch):
    """The eval-mode forward (no aux heads): FlopCounterMode's total FLOPs / 2."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    import impls.torch_nn as T

    model = getattr(T, arch)().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    macs = total(summarize(model.spec, (224, 224)), eval_only=True).macs
    assert counter.get_total_flops() == 2 * macs


# --- Inception v3 ---------------------------------------------------------------------------

@pytest.mark.parametrize("aux, expected", [(True, 27_161_264), (False, 23_834_568)])
def test_inception_v3_params_match_torchvision(aux, expected):
    # torchvision's inception_v3(aux_logits=True) has 27,161,264 parameters (its published count).
    assert total(summarize(model_spec("inception_v3", aux_logits=aux), (299, 299))).params == expected


def test_inception_v3_stage_shapes_and_macs_match_torch():
    """Train mode at 299 (aux head included): every stage's shape and MACs equal torch's, and
    the eval total equals FlopCounterMode's FLOPs / 2."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    import impls.torch_nn as T

    model = T.inception_v3().train()
    x, capture = torch.randn(2, 3, 299, 299), {}  # train-mode BN needs 2 values per channel (aux 1x1)
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        model.forward_stages(x, capture=capture)
        with counter:
            model(x)
    flops = counter.get_flop_counts()
    rows = summarize(model.spec, (299, 299))
    stages = [r for r in rows if not r.name.startswith("total")]
    assert [r.name for r in stages] == list(capture)
    for r in stages:
        assert tuple(capture[r.name].shape[1:]) == r.out_shape, r.name
        assert sum(flops.get(f"InceptionV3.{r.name}", {}).values()) == 2 * 2 * r.macs, r.name  # batch of 2
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(x)
    assert counter.get_total_flops() == 2 * 2 * total(rows, eval_only=True).macs
