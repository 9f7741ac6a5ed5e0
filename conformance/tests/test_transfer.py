"""Transfer learning with one API in every framework (``for_transfer`` / ``trainable`` in
``impls.{torch_nn,flax_nnx,keras3}.transfer``): converted GoogLeNet weights, new 5-way main and
aux classifiers, frozen backbone, 3 SGD steps on a synthetic task (conformance/transfer_data.py).

Checked per framework: only the classifiers are trainable and they start from the shared seeded
init; after fine-tuning every frozen tensor, BN running statistics included, is bit-identical
(frozen BN uses running statistics in train mode) and every classifier tensor changed; losses are
finite and the eval loss fell; the fine-tuned weights convert like any others (num_classes=5).
PyTorch and Flax run in this process; Keras runs per backend in conformance/tests/keras_transfer.py.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conformance.launch import REPO, environment
from conformance.memory import ALONE

from .helpers import own_process
from .transfer_data import AUX_WEIGHT, LR, NUM_CLASSES, batches, dataset

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
# Each backend fine-tunes in its own Keras process (20 s of CPU and up): the slow tier; the
# default tier's transfer checks are torch's and flax's.
KERAS_PARAMS = [pytest.param(b, marks=pytest.mark.slow) for b in KERAS_BACKENDS]
GOOGLENET_HEADS = {"fc.weight", "fc.bias", "aux1.fc2.weight", "aux1.fc2.bias", "aux2.fc2.weight", "aux2.fc2.bias"}


def test_spec_heads_and_num_classes():
    from impls.spec import model_spec
    from impls.spec.transfer import classifier_layers, with_num_classes

    assert classifier_layers(model_spec("googlenet")) == {"fc": 1024, "aux1.fc2": 1024, "aux2.fc2": 1024}
    assert classifier_layers(model_spec("googlenet", aux_logits=False)) == {"fc": 1024}
    spec = with_num_classes(model_spec("googlenet_paper", dropout=0.1), 5)
    assert spec == model_spec("googlenet_paper", num_classes=5, dropout=0.1)


def _check_roundtrip(ckpt, tmp_path):
    """A fine-tuned checkpoint writes to the neutral format and reads back identical."""
    from weights_bridge import read, write

    assert (ckpt.num_classes, ckpt.aux_logits) == (NUM_CLASSES, True)
    write(ckpt, tmp_path / "finetuned.neutral")
    back = read(tmp_path / "finetuned.neutral")
    assert back.num_classes == NUM_CLASSES and back.tensors.keys() == ckpt.tensors.keys()
    for k, v in ckpt.tensors.items():
        np.testing.assert_array_equal(back.tensors[k], v, err_msg=k)


def _check_weights(before, after, heads):
    frozen_changed = [k for k in before if k not in heads and not np.array_equal(before[k], after[k])]
    heads_unchanged = [k for k in heads if np.array_equal(before[k], after[k])]
    assert not frozen_changed, f"frozen tensors changed: {frozen_changed[:5]}"
    assert not heads_unchanged, f"classifier tensors not trained: {heads_unchanged}"


def test_torch_transfer(googlenet_pth, tmp_path):
    import torch

    from impls.spec.transfer import head_init
    from impls.torch_nn import create_model
    from impls.torch_nn.transfer import for_transfer, trainable
    from weights_bridge import read

    model = create_model("googlenet")
    model.load_state_dict(torch.load(googlenet_pth, weights_only=True))
    model = for_transfer(model, NUM_CLASSES, seed=0)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == GOOGLENET_HEADS and len(trainable(model)) == 6
    np.testing.assert_array_equal(model.fc.weight.detach().numpy(), head_init(model.spec, NUM_CLASSES)["fc"]["weight"])
    before = {k: v.clone().numpy() for k, v in model.state_dict().items()}

    xs, ys = (torch.from_numpy(a) for a in dataset(channels_last=False))
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        eval_before = ce(model.eval()(xs), ys.long()).item()
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns), "frozen BN must stay in eval mode under model.train()"
    assert model.aux1.dropout.training
    opt = torch.optim.SGD(trainable(model), lr=LR)
    losses = []
    for x, y in batches(xs, ys.long()):
        out = model(x)
        loss = ce(out.logits, y) + AUX_WEIGHT * (ce(out.aux_logits1, y) + ce(out.aux_logits2, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        eval_after = ce(model.eval()(xs), ys.long()).item()
    after = {k: v.numpy() for k, v in model.state_dict().items()}
    _check_weights(before, after, GOOGLENET_HEADS)
    assert np.all(np.isfinite(losses)) and eval_after < eval_before, (losses, eval_before, eval_after)

    pth = tmp_path / "finetuned.pth"
    torch.save(model.state_dict(), pth)
    ckpt = read(pth, architecture="googlenet")  # any bridge file: num_classes read off the tensors
    _check_roundtrip(ckpt, tmp_path)
    np.testing.assert_array_equal(ckpt.tensors["fc.weight"], after["fc.weight"])


def test_flax_transfer(googlenet_pth, tmp_path):
    import optax
    from flax import nnx

    from impls.flax_nnx.transfer import for_transfer, trainable
    from impls.spec.transfer import head_init
    from weights_bridge import convert
    from weights_bridge.flax_io import from_model, load_model

    msgpack = tmp_path / "googlenet.msgpack"
    convert(googlenet_pth, msgpack, "googlenet")
    model = for_transfer(load_model(msgpack, "googlenet"), NUM_CLASSES, seed=0)
    wrt = trainable(model)
    trainable_paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, wrt))}
    assert trainable_paths == {k.replace("weight", "kernel") for k in GOOGLENET_HEADS}
    np.testing.assert_array_equal(np.asarray(model.fc.kernel.get_value()).T,
                                  head_init(model.spec, NUM_CLASSES)["fc"]["weight"])
    before = from_model(model, "googlenet").tensors

    xs, ys = dataset(channels_last=True)
    ce = lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    eval_loss = nnx.jit(lambda m, x, y: ce(m(x), y))
    model.eval()
    eval_before = float(eval_loss(model, xs, ys))
    optimizer = nnx.Optimizer(model, optax.sgd(LR), wrt=wrt)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            out = model(x)
            return ce(out.logits, y) + AUX_WEIGHT * (ce(out.aux_logits1, y) + ce(out.aux_logits2, y))

        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt))(model)
        optimizer.update(model, grads)
        return loss

    model.train()
    losses = [float(step(model, optimizer, x, y)) for x, y in batches(xs, ys)]
    model.eval()
    eval_after = float(eval_loss(model, xs, ys))
    ckpt = from_model(model, "googlenet")
    _check_weights(before, ckpt.tensors, GOOGLENET_HEADS)
    assert np.all(np.isfinite(losses)) and eval_after < eval_before, (losses, eval_before, eval_after)
    _check_roundtrip(ckpt, tmp_path)


@pytest.fixture(scope="module")
def keras_results(googlenet_pth, tmp_path_factory, request, pool):
    """The selected Keras backends fine-tune at once, each in its own process (the slow part);
    the session's idle workers are closed first, as the pool's budget cannot see these."""
    selected = {item.callspec.params["backend"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_keras_transfer" and hasattr(item, "callspec")}
    procs, results = {}, {}
    with own_process(pool, ALONE):
        for backend in [b for b in KERAS_BACKENDS if b in selected]:
            out = tmp_path_factory.mktemp(f"transfer-keras-{backend}")
            procs[backend] = (out, subprocess.Popen(
                [sys.executable, "-m", "conformance.tests.keras_transfer", backend, str(googlenet_pth), str(out)],
                cwd=REPO, env=environment(f"keras-{backend}"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True))
        for backend, (out, proc) in procs.items():
            log = proc.communicate()[0]
            results[backend] = (json.loads((out / "result.json").read_text()) if proc.returncode == 0
                                else f"worker exited {proc.returncode}:\n{log[-3000:]}")
    return results


@pytest.mark.parametrize("backend", KERAS_PARAMS)
def test_keras_transfer(keras_results, backend):
    r = keras_results[backend]
    assert isinstance(r, dict), r
    assert {p.split("/", 1)[1] for p in r["trainable"]} == {"fc/kernel", "fc/bias", "aux1/aux1-fc2/kernel",
                                                           "aux1/aux1-fc2/bias", "aux2/aux2-fc2/kernel",
                                                           "aux2/aux2-fc2/bias"}
    assert r["head_init_shared"]
    assert r["frozen_count"] > 0 and not r["frozen_changed"], r["frozen_changed"][:5]
    assert not r["heads_unchanged"]
    assert np.all(np.isfinite(r["losses"])) and r["eval_after"] < r["eval_before"], r
    assert r["roundtrip"] == {"num_classes": NUM_CLASSES, "aux_logits": True, "file_equals_model": True,
                              "neutral_equals": True}
