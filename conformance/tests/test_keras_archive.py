""".keras archives of our Keras models: ``model.save("x.keras")`` and, after ``import impls.keras3``,
``keras.saving.load_model("x.keras")`` in safe mode with no ``custom_objects``; the bridge writes
what Keras writes and reads what Keras writes, bit for bit; an archive saved on one backend loads
on the other two. Keras runs in subprocesses (see conftest); hostile archives are in
test_hostile_formats.py and test_hostile_keras_cli.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conformance.compare.tolerances import within
from weights_bridge import Checkpoint, keras_config

from .helpers import own_process, require, run_python

# What its Keras processes reach, one at a time (peak PSS, alone, 2026-12-04): 1.0-1.6 GiB, the
# keras-jax save the largest. Declared below the helpers' default 3 GiB, so it fits beside the
# data-parallel JAX steps (3.25 GiB) instead of each waiting for the other.
KERAS_PROCESS_MEMORY = 2 * 2**30

ARCH = "googlenet"

# On one backend: the bridge's archive loaded by Keras is our model holding the checkpoint (same
# class, weights, outputs); Keras's own archive of that model has the bridge's config.json and
# reads back through the bridge bit for bit; every layer class is registered and rebuilds from
# its config; a transfer-learning SpecModel (a spec no class is named after) saves and loads.
SAME_BACKEND = r"""
import json, sys, zipfile
import numpy as np, keras
import impls.keras3  # registers our classes: load_model needs nothing else
import weights_bridge as wb
from weights_bridge import keras_io
from impls.keras3.transfer import for_transfer
pth, work = sys.argv[1], sys.argv[2]
ckpt = wb.read(pth, architecture="googlenet")
wb.convert(pth, f"{work}/bridge.keras", "googlenet")
loaded = keras.saving.load_model(f"{work}/bridge.keras")  # safe_mode=True, no custom_objects
ours = keras_io.to_model(ckpt)
x = np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")
out = {"class": type(loaded).__name__,
       "same_outputs": bool(np.array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(ours(x)))),
       "same_weights": all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), ours.get_weights()))}
ours.save(f"{work}/keras.keras")
config = lambda p: json.loads(zipfile.ZipFile(p).read("config.json"))
out["same_config"] = config(f"{work}/keras.keras") == config(f"{work}/bridge.keras")
back = wb.read(f"{work}/keras.keras")
out["read_back"] = sorted(back.tensors) == sorted(ckpt.tensors) and all(
    np.array_equal(back.tensors[k], ckpt.tensors[k]) for k in ckpt.tensors)
layers, unregistered, seen = {}, set(), set()
for arch in ("googlenet_paper", "inception_resnet_v2", "inception_v3"):
    for layer in impls.keras3.create_model(arch, input_size=None)._flatten_layers(include_self=False):
        cls, cfg = type(layer), layer.get_config()
        unnamed = json.dumps({k: v for k, v in cfg.items() if k != "name"}, sort_keys=True, default=repr)
        if cls.__module__.startswith("impls.") and (cls, unnamed) not in seen:  # each config once: 210 of 865
            seen.add((cls, unnamed))
            if not keras.saving.get_registered_name(cls).startswith("inception_bridge>"):
                unregistered.add(cls.__name__)
            layers[cls.__name__] = layers.get(cls.__name__, True) and cls.from_config(cfg).get_config() == cfg
out["layers"], out["unregistered"] = layers, sorted(unregistered)
tuned = for_transfer(ours, num_classes=5)
tuned.save(f"{work}/tuned.keras")
again = keras.saving.load_model(f"{work}/tuned.keras")
out["transfer"] = [type(again).__name__, bool(np.array_equal(keras.ops.convert_to_numpy(again(x)),
                                                             keras.ops.convert_to_numpy(tuned(x))))]
print("RESULT " + json.dumps(out))
"""


def _result(stdout: str) -> dict:
    line = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, stdout[-2000:]
    return json.loads(line[-1][len("RESULT "):])


def test_archive_round_trip_on_tensorflow(googlenet_pth, tmp_path):
    require("keras", "tensorflow")
    r = _result(run_python(SAME_BACKEND, googlenet_pth, tmp_path))
    assert r["class"] == "GoogLeNet" and r["same_weights"] and r["same_outputs"], r
    assert r["same_config"] and r["read_back"], r
    assert not r["unregistered"] and r["layers"] and all(r["layers"].values()), r
    assert {"ConvBlock", "BatchNorm", "Sequence", "BranchBlock", "Residual", "MaxPool", "AvgPool", "LRN",
            "AdaptiveAvgPool", "Linear"} <= set(r["layers"]), r["layers"]
    assert r["transfer"] == ["SpecModel", True], r


def test_bridge_config_is_the_keras_one():
    """What ``model_config`` writes: our class, registered name, the spec's keywords, the input size."""
    config = keras_config.model_config(Checkpoint(ARCH, {}, num_classes=10))
    assert config["registered_name"] == "inception_bridge>GoogLeNet" and config["module"] == "impls.keras3"
    assert config["config"] == {"name": ARCH, "input_size": 224, "architecture": ARCH, "variant": "default",
                                "num_classes": 10, "aux_logits": True, "transform_input": False, "dropout": 0.2,
                                "dropout_aux": 0.7}
    assert config["build_config"] == {"input_shape": [None, 224, 224, 3]}


# Pass 1 on each backend: our model holding the weights saves its archive and its outputs. Pass 2:
# it loads the other backends' archives and the bridge's, each giving exactly its own model's
# outputs, and converts its own archive back to a .pth (one process per backend and pass: each
# fresh Keras costs 4-7 s of imports).
SAVE = r"""
import sys, numpy as np, keras, impls.keras3, weights_bridge as wb
from weights_bridge import keras_io
pth, work, backend = sys.argv[1], sys.argv[2], keras.backend.backend()
model = keras_io.to_model(wb.read(pth, architecture="googlenet"))
model.save(f"{work}/{backend}.keras")
x = np.load(f"{work}/x.npy")
np.save(f"{work}/{backend}.npy", keras.ops.convert_to_numpy(model(x)))
"""
LOAD = r"""
import json, sys, numpy as np, keras, impls.keras3, weights_bridge as wb
work, backend = sys.argv[1], keras.backend.backend()
x, own = np.load(f"{work}/x.npy"), np.load(f"{work}/{backend}.npy")
out = {}
for name in sys.argv[2:]:
    loaded = keras.saving.load_model(f"{work}/{name}.keras")
    out[name] = bool(np.array_equal(keras.ops.convert_to_numpy(loaded(x)), own))
wb.convert(f"{work}/{backend}.keras", f"{work}/{backend}.pth", "googlenet")
print("RESULT " + json.dumps(out))
"""
BACKENDS = ("tensorflow", "jax", "torch")
OTHERS = {b: [o for o in BACKENDS if o != b] + ["bridge"] for b in BACKENDS}  # the archives b's pass 2 loads


@pytest.mark.slow
def test_archive_saved_on_one_backend_loads_on_the_others(googlenet_pth, tmp_path, pool):
    """Each backend's ``model.save`` archive loads on the other two (and the bridge's on all three),
    giving exactly the loading backend's own outputs for these weights; the backends agree within
    the eval tolerance; every archive converts back to the checkpoint, bit for bit."""
    require("keras", "tensorflow", "jax", "torch")
    np.save(tmp_path / "x.npy", np.random.default_rng(1).standard_normal((2, 224, 224, 3)).astype("float32"))
    with own_process(pool, KERAS_PROCESS_MEMORY):
        for backend in BACKENDS:
            run_python(SAVE, googlenet_pth, tmp_path, process=f"keras-{backend}")
        run_python(CONVERT, googlenet_pth, tmp_path / "bridge.keras")
        loaded = {b: _result(run_python(LOAD, tmp_path, *OTHERS[b], process=f"keras-{b}")) for b in BACKENDS}
    outputs = {b: np.load(tmp_path / f"{b}.npy") for b in BACKENDS}
    for backend in BACKENDS:
        assert loaded[backend] == dict.fromkeys(OTHERS[backend], True), backend
        for other in OTHERS[backend][:-1]:
            gap = float(np.abs(outputs[backend] - outputs[other]).max())
            assert within(gap, float(np.abs(outputs[backend]).max()), "eval"), (backend, other, gap)
    original = torch.load(googlenet_pth, weights_only=True)
    for backend in BACKENDS:
        back = torch.load(tmp_path / f"{backend}.pth", weights_only=True)
        assert all(torch.equal(original[k], back[k]) for k in original if not k.endswith("num_batches_tracked"))


CONVERT = "import sys, weights_bridge as wb; wb.convert(sys.argv[1], sys.argv[2], 'googlenet')"
