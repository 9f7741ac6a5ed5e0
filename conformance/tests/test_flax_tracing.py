"""The Flax NNX shortcuts that keep tracing linear in a model's size are NNX's own in everything
observable. Under a trace, NNX's ``Variable`` assignments make JAX walk the whole trace so far,
so an abstract build and a training step's trace took time quadratic in the model's size:

* ``abstract_model`` (every Flax load) is ``nnx.eval_shape(lambda: create_model(...))``: the
  same graph, the same variables' shapes and dtypes;
* our ``BatchNorm`` (every ``ConvBlock``) gives ``nnx.BatchNorm``'s outputs and running statistics
  bit for bit, eagerly and under ``nnx.jit``, step after step.
"""
from __future__ import annotations

import numpy as np
import pytest

from .helpers import require


@pytest.mark.parametrize("arch", ["googlenet", pytest.param("inception_resnet_v2", marks=pytest.mark.slow)])
def test_abstract_model_is_flaxs_eval_shape_idiom(arch):
    """``abstract_model`` counts its RNG keys in Python (linear time) and is otherwise Flax's own
    ``nnx.eval_shape(lambda: create_model(...))``: the same graph, the same variables' shapes and
    dtypes. The slow case is the model whose idiom build takes 21-26 s."""
    require("flax")
    import jax
    from flax import nnx

    from impls.flax_nnx import abstract_model, create_model

    ours = abstract_model(arch, num_classes=10)
    idiom = nnx.eval_shape(lambda: create_model(arch, num_classes=10))
    assert nnx.graphdef(ours) == nnx.graphdef(idiom)
    shapes = [jax.tree.map(lambda v: (v.shape, v.dtype), nnx.state(m)) for m in (ours, idiom)]
    assert shapes[0] == shapes[1] and len(jax.tree.leaves(shapes[0])) > 100


@pytest.mark.parametrize("jit", [False, True])
def test_batch_norm_is_nnx_batch_norm_bit_for_bit(jit):
    require("flax")
    import jax.numpy as jnp
    from flax import nnx

    from impls.flax_nnx.layers import BatchNorm

    rng = np.random.default_rng(0)
    values = {name: rng.standard_normal(16).astype(np.float32) for name in ("scale", "bias", "mean")}
    values["var"] = (rng.random(16) + 0.5).astype(np.float32)

    def made(cls):
        bn = cls(16, epsilon=1e-3, momentum=0.9, use_fast_variance=False, rngs=nnx.Rngs(0))
        for name, v in values.items():
            getattr(bn, name).set_value(jnp.asarray(v))
        return bn

    ours, theirs = made(BatchNorm), made(nnx.BatchNorm)
    run = nnx.jit(lambda m, x: m(x)) if jit else (lambda m, x: m(x))
    for step in range(3):  # train mode: the running statistics move each step
        x = jnp.asarray(rng.standard_normal((4, 7, 7, 16)) * 3 + 1, jnp.float32)
        assert np.array_equal(run(ours, x), run(theirs, x)), step
        assert np.array_equal(ours.mean[...], theirs.mean[...]) and np.array_equal(ours.var[...], theirs.var[...])
    assert not np.array_equal(ours.mean[...], values["mean"])
    ours.eval(), theirs.eval()
    x = jnp.asarray(rng.standard_normal((2, 5, 5, 16)), jnp.float32)
    assert np.array_equal(run(ours, x), run(theirs, x))


def test_batch_norm_train_step_is_its_own_and_keeps_dtypes(monkeypatch):
    """The train-mode step never reaches ``nnx.BatchNorm.__call__`` (else the test above compared
    NNX with itself), and like NNX's indexed assignment it keeps each statistic's dtype: float32
    statistics stay float32 under a float64 input."""
    require("flax")
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from impls.flax_nnx.layers import BatchNorm

    bn = BatchNorm(8, epsilon=1e-3, momentum=0.9, use_fast_variance=False, rngs=nnx.Rngs(0))
    monkeypatch.setattr(nnx.BatchNorm, "__call__", lambda *a, **k: pytest.fail("fell back to nnx.BatchNorm"))
    with jax.enable_x64(True):
        bn(jnp.ones((2, 3, 3, 8), jnp.float64) * np.arange(8))
    assert bn.mean[...].dtype == bn.var[...].dtype == jnp.float32
    assert np.allclose(bn.mean[...], 0.1 * np.arange(8))
