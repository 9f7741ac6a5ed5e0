"""The shortcuts that make ``convert`` fast and lean write and read exactly what the libraries'
own slow paths do (timings and memory are measured in docs/benchmarks.md, never asserted):

* Flax: native shapes from the canonical table equal the NNX model's own state; the streamed
  msgpack is byte-identical to ``flax.serialization.msgpack_serialize``.
* neutral: the one-buffer reader returns what ``safetensors.numpy.load_file`` returns.
* Keras: the h5py writer's file equals Keras's own ``save_weights`` file, group for group,
  attribute for attribute and byte for byte (in a subprocess: the pytest process never imports
  keras), and Keras's ``load_weights`` reads it back.
"""
from __future__ import annotations

import numpy as np
import pytest

from .helpers import require, run_python


@pytest.fixture(scope="module")
def ckpt(googlenet_pth):
    from weights_bridge.formats import read

    return read(googlenet_pth, architecture="googlenet")


def test_flax_native_shapes_match_the_nnx_model(ckpt):
    require("flax")
    from flax import nnx

    from impls.flax_nnx import create_model
    from weights_bridge.flax_io import native_shapes, weight_filter

    model = nnx.eval_shape(lambda: create_model("googlenet", aux_logits=True))
    state = nnx.state(model, weight_filter())
    own = {".".join(map(str, p)): tuple(v.get_value().shape) for p, v in nnx.to_flat_state(state)}
    assert native_shapes("googlenet", 1000, True) == own


def test_flax_streamed_file_equals_msgpack_serialize(ckpt, tmp_path):
    require("flax")
    from flax import serialization

    from weights_bridge import flax_io

    flax_io.write(ckpt, tmp_path / "g.msgpack")
    expected = serialization.msgpack_serialize(flax_io.nest(flax_io.native_tensors(ckpt)))
    assert (tmp_path / "g.msgpack").read_bytes() == expected


def test_neutral_reader_equals_safetensors_load_file(ckpt, tmp_path):
    from safetensors.numpy import load_file

    from weights_bridge import neutral

    neutral.write(ckpt, tmp_path / "g.neutral")
    ours = neutral.read(tmp_path / "g.neutral").tensors
    theirs = load_file(str(tmp_path / "g.neutral" / "model.safetensors"))
    assert list(ours) == list(theirs)
    assert all(ours[k].dtype == np.float32 and np.array_equal(ours[k], theirs[k]) for k in theirs)
    assert all(ours[k].flags.writeable for k in ours)  # torch.from_numpy shares them without a warning


KERAS_SCRIPT = r"""
import sys
import h5py, keras, numpy as np
from impls.keras3 import create_model
from weights_bridge import formats, keras_io
src, own, ours = sys.argv[1:]
ck = formats.read(src, architecture="googlenet")
model = keras_io.load_into(create_model("googlenet", num_classes=ck.num_classes, aux_logits=ck.aux_logits), ck)
model.save_weights(own)
keras_io.write(ck, ours)
def tree(p):
    out = {}
    with h5py.File(p, "r") as f:
        out["/"] = dict(f.attrs)
        f.visititems(lambda n, o: out.__setitem__(n, (o.shape, str(o.dtype), o[()].tobytes())
                     if isinstance(o, h5py.Dataset) else dict(o.attrs)))
    return out
a, b = tree(own), tree(ours)
print("DIFF", sorted(set(a) ^ set(b))[:5], [k for k in a if k in b and a[k] != b[k]][:5], len(a))
back = create_model("googlenet", num_classes=ck.num_classes, aux_logits=ck.aux_logits)
back.load_weights(ours)
same = all(np.array_equal(keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))
           for x, y in zip(model.weights, back.weights))
print("LOADED", same, len(model.weights))
"""


@pytest.mark.slow
def test_keras_h5_writer_equals_keras_save_weights(googlenet_pth, tmp_path, room):
    require("keras", "tensorflow", "h5py")
    stdout = run_python(KERAS_SCRIPT, googlenet_pth, tmp_path / "own.weights.h5", tmp_path / "ours.weights.h5")
    lines = dict(ln.split(" ", 1) for ln in stdout.splitlines() if ln.startswith(("DIFF", "LOADED")))
    head, compared = lines["DIFF"].rsplit(" ", 1)
    assert head == "[] []" and int(compared) > 0, lines["DIFF"]  # no object missing, extra or different
    assert lines["LOADED"].startswith("True "), lines["LOADED"]
