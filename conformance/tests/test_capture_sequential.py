"""Per-block capture of Inception-v4: timm keeps the whole trunk in one ``features`` Sequential, so
capture reports each of its items (stem convs, Mixed/Inception/Reduction blocks) as ``features.<i>``,
the module paths timm's own forward hooks see, in every implementation."""
import numpy as np
import pytest
import torch

from conformance.frameworks.base import nchw
from conformance.frameworks.torch_nn import model as torch_model
from impls.spec import model_spec
from impls.torch_nn import create_model

timm = pytest.importorskip("timm")

SIZE = 75  # the smallest input Inception-v4 takes (8x8 -> 1x1 after Reduction-B): cheap


def _timm_block_names(peer):
    """Our block names read off timm's modules: each child of ``features``, then the head."""
    return [f"features.{i}" for i in range(len(peer.features))] + ["global_pool", "head_drop", "last_linear"]


@pytest.fixture(scope="module")
def captured():
    """(timm model, its block names, our torch model's captured blocks, the input)."""
    peer = timm.create_model("inception_v4", pretrained=False).eval()
    ours = create_model("inception_v4").eval()
    ours.load_state_dict(peer.state_dict(), strict=True)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return peer, _timm_block_names(peer), torch_model.blocks(ours, x), x


def test_torch_capture_lists_each_features_block_as_timm_hooks_see_it(captured):
    peer, names, ours_blocks, x = captured
    assert len(names) == 25 and len(peer.features) == 22  # 3 stem convs, 3 Mixed, 4 A, 1 RA, 7 B, 1 RB, 3 C
    assert model_spec("inception_v4").block_names() == names
    peer_blocks = torch_model.peer_blocks(peer, x, names)
    assert list(ours_blocks) == names
    assert list(peer_blocks) == names  # hooks fire in forward order
    for name, a in peer_blocks.items():
        assert np.array_equal(ours_blocks[name], a), name  # same modules, same arithmetic: bit-identical


def test_flax_capture_names_and_shapes_equal_torch(captured):
    """Traced abstractly (``nnx.eval_shape``: nothing allocated or compiled), in eval mode as the
    torch model runs."""
    jax = pytest.importorskip("jax")
    from flax import nnx

    from impls.flax_nnx import abstract_model

    model = abstract_model("inception_v4")
    model.eval()
    order = []

    def run(m, x):
        captured = {}
        m.forward_stages(x, capture=captured)
        order.extend(captured)  # the dict jax returns is sorted; keep the forward order here
        return captured

    shapes = nnx.eval_shape(run, model, jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jax.numpy.float32))
    torch_blocks = captured[2]
    assert order == list(torch_blocks) and len(order) > 1
    for name, a in torch_blocks.items():
        assert nchw(np.zeros(shapes[name].shape, np.int8)).shape == a.shape, name


@pytest.mark.slow
def test_every_implementation_captures_each_block_within_tolerance(pool, tmp_path):
    """What ``verify inception_v4 --layers`` runs, on one small eval task: every implementation
    (and timm, by hooks) reports the same 25 blocks, none past the per-block tolerance."""
    from conformance import registry
    from conformance.agreement import matrix as m
    from conformance.agreement.checkpoints import prepare
    from conformance.agreement.tasks import Task

    arch = "inception_v4"
    impls = [i for i in ("torch", "flax", "keras-tensorflow", "keras-jax", "keras-torch", "timm") if registry.available(i)]
    files = prepare(arch, tmp_path / "weights", pool, impls)
    tasks = [Task(arch, "eval", 107, batch=1, layers=True)]
    errors, _ = m.run_tasks(impls, tasks, files, tmp_path, pool)
    assert not errors, errors
    names = model_spec(arch).block_names()
    report = m.block_divergence(tasks, impls, tmp_path, errors)[tasks[0].id]
    assert set(report) == set(impls) - {"torch"}
    for impl, (rows, first) in report.items():
        assert [r[0] for r in rows] == names, impl
        assert first is None, (impl, rows)
