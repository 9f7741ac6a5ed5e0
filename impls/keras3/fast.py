"""The fast inference form of a Keras model, for every backend: BatchNorm folded into the
convolutions (biased ``Conv2D`` with the ReLU as its activation), the Inception blocks' parallel
1x1 convolutions merged into one, 'same' padding wherever it equals the explicit symmetric pad.

    model = create_model("inception_v3", input_size=299); model.load_weights(...)
    fast = optimize_for_inference(model)     # a new eval-only keras.Model; ``model`` untouched
    logits = fast.predict_on_batch(x)

Why each step pays, on the TensorFlow backend: TF's graph optimiser (grappler's remapper, oneDNN)
fuses ``Conv2D + BiasAdd + Relu`` into one kernel, but not our BatchNorm's arithmetic, nor a
``Pad`` in front of the convolution. On jax the convolution dominates and the gain is the merged
1x1s. On torch, Keras's backend copies NHWC<->NCHW around every convolution and pool; there the
convolutions and pools run on torch directly, channels-last, bias and ReLU fused (``fast_torch``).
Folding is done in float64 and cast once, so the outputs stay within the eval tolerance of the
model it came from (checked in ``conformance/tests/test_fast.py`` through a worker).
"""
from __future__ import annotations

import numpy as np
import keras
from keras import layers, ops

from ..spec import blocks as B
from .blocks import BranchBlock, Residual, Sequence
from .layers import AvgPool, ConvBlock, MaxPool, spatial_mean


def _np64(v):
    return np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64)


def _fold(block: ConvBlock):
    """(kernel HWIO, bias) of ``bn(conv(x))`` in float64."""
    w = _np64(block.conv.kernel)
    b = _np64(block.conv.bias) if block.conv.use_bias else np.zeros(w.shape[-1])
    bn = block.bn
    if bn is not None:
        s = 1.0 / np.sqrt(_np64(bn.moving_variance) + bn.epsilon)
        if bn.scale:
            s = s * _np64(bn.gamma)
        w, b = w * s, (b - _np64(bn.moving_mean)) * s + (_np64(bn.beta) if bn.center else 0.0)
    return w, b


class ConvAct(layers.Layer):
    """``act(conv(pad(x)) + bias)``; the pad is Conv2D's own 'same' where that is the same pad."""

    def __init__(self, kernel, bias, strides, padding, relu=True, **kwargs):
        super().__init__(**kwargs)
        kh, kw = kernel.shape[:2]
        self.pad = tuple(padding)
        same = tuple(strides) == (1, 1) and self.pad == ((kh - 1) // 2, (kw - 1) // 2) and kh % 2 and kw % 2
        self.explicit_pad = not same and any(self.pad)
        self.conv = layers.Conv2D(kernel.shape[-1], (kh, kw), tuple(strides), padding="same" if same else "valid",
                                  activation="relu" if relu else None, name=f"{self.name}-conv",
                                  kernel_initializer=_const(kernel), bias_initializer=_const(bias))
        self.out_channels = int(kernel.shape[-1])
        self.kernel_np, self.bias_np = kernel, bias  # kept for merging; never trained

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, x):
        if keras.backend.backend() == "torch":  # no NHWC<->NCHW copies, bias and ReLU fused
            from .fast_torch import conv_act

            return conv_act(self.conv, self.pad, self.conv.activation is keras.activations.relu, x)
        if self.explicit_pad:
            ph, pw = self.pad
            x = ops.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        return self.conv(x)

    @property
    def pointwise(self):
        return self.kernel_np.shape[:2] == (1, 1) and self.conv.strides == (1, 1) and not any(self.pad)


def _const(array):
    array = np.asarray(array, np.float32)
    return lambda shape, dtype=None: ops.convert_to_tensor(array.reshape(shape), dtype="float32")


class Chain(layers.Layer):
    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        self.steps = list(steps)

    def call(self, x):
        for s in self.steps:
            x = s(x)
        return x


class SplitStep(Chain):
    def call(self, x):
        return ops.concatenate([s(x) for s in self.steps], axis=-1)


class MergedBranches(layers.Layer):
    """An Inception block with its leading pointwise convolutions as one ``Conv2D``; a residual
    block's ``act(conv2d(cat) * scale + x)`` with the scale folded into the projection."""

    def __init__(self, paths, project=None, scale=1.0, relu=True, merge=True, **kwargs):
        super().__init__(**kwargs)
        heads = [i for i, p in enumerate(paths) if p and isinstance(p[0], ConvAct) and p[0].pointwise]
        heads = heads if merge and len(heads) >= 2 else []
        self.merged, self.sizes = heads, [paths[i][0].out_channels for i in heads]
        self.head = ConvAct(np.concatenate([paths[i][0].kernel_np for i in heads], -1),
                            np.concatenate([paths[i][0].bias_np for i in heads]), (1, 1), (0, 0),
                            name=f"{self.name}-head") if heads else None
        self.paths = [Chain(p[1:] if i in heads else p, name=f"{self.name}-path{i}") for i, p in enumerate(paths)]
        self.project, self.relu = None, relu
        if project is not None:
            w, b = _np64(project.kernel) * scale, _np64(project.bias) * scale
            self.project = ConvAct(w, b, project.strides, (0, 0), relu=False, name=f"{self.name}-project")

    def call(self, x):
        parts = {}
        if self.head is not None:
            bounds = np.cumsum(self.sizes)[:-1].tolist()
            parts = dict(zip(self.merged, ops.split(self.head(x), bounds, axis=-1)))
        out = ops.concatenate([p(parts[i]) if i in parts else p(x) for i, p in enumerate(self.paths)], axis=-1)
        if self.project is None:
            return out
        out = self.project(out) + x
        return ops.relu(out) if self.relu else out


class _Counter:
    def __init__(self):
        self.n = 0

    def name(self, stem):
        self.n += 1
        return f"fast{self.n}-{stem}"


def _steps(layer, fuse, c):
    items = layer.ordered() if isinstance(layer, Sequence) else [layer]
    return [transform(s, fuse, c) for s in items]


def _paths(block: BranchBlock, fuse, c):
    paths = []
    for path in block.paths:
        steps = []
        for step in path:
            if isinstance(step, B.Split):
                parts = [transform(block.step(n), fuse, c) for n, _ in step.parts]
                steps.append(SplitStep(parts, name=c.name("split")))
            else:
                steps += _steps(block.step(step[0]), fuse, c)
        paths.append(steps)
    return paths


def transform(layer, fuse=True, c=None):
    """The eval-only counterpart of one layer: ConvBlocks folded, blocks' heads merged (``fuse``)."""
    c = c or _Counter()
    if isinstance(layer, ConvBlock):
        w, b = _fold(layer)
        return ConvAct(w, b, layer.conv.strides, layer.padding, name=c.name("conv"))
    if isinstance(layer, Residual):
        return MergedBranches(_paths(layer, fuse, c), layer.step("conv2d"), layer.scale, layer.relu, merge=fuse,
                              name=c.name("block"))
    if isinstance(layer, BranchBlock):
        return MergedBranches(_paths(layer, fuse, c), merge=fuse, name=c.name("block"))
    if isinstance(layer, Sequence):
        return Chain(_steps(layer, fuse, c), name=c.name("seq"))
    if isinstance(layer, (MaxPool, AvgPool)) and keras.backend.backend() == "torch":
        from .fast_torch import TorchPool

        return TorchPool(layer.spec, name=c.name("pool"))
    if isinstance(layer, MaxPool) and layer.spec.stride == (1, 1):
        s = layer.spec  # stride 1, symmetric pad k//2: ceil_mode changes nothing, 'same' is the same window
        if s.padding == tuple(k // 2 for k in s.kernel_size) and all(k % 2 for k in s.kernel_size):
            return layers.MaxPooling2D(s.kernel_size, 1, padding="same", name=c.name("maxpool"))
    return layer  # pools, dropout, dense: stateless or shared as they are


class FastModel(keras.Model):
    """The trunk of a ``SpecModel`` in eval mode (no aux heads), from transformed layers."""

    def __init__(self, model, fuse=True, **kwargs):
        super().__init__(name=kwargs.pop("name", f"{model.name}_fast"), **kwargs)
        self.spec = model.spec
        c = _Counter()
        self.stage_layers = [transform(layer, fuse, c) for layer in model.stage_layers]

    def call(self, x, training=False):
        x = ops.convert_to_tensor(x)
        if self.spec.transform_input:
            cfg = self.spec.config
            x = x * np.asarray(cfg.transform_scale, "float32") + np.asarray(cfg.transform_shift, "float32")
        if self.spec.features:  # a feature extractor: the same named tuple as the model's
            stages = dict(zip((name for name, _ in self.spec.stages), self.stage_layers))
            return self.spec.forward_features(x, lambda name, v: stages[name](v), spatial_mean,
                                              lambda name, v: stages[name].parts(v))
        for layer in self.stage_layers:
            x = layer(x)
        return x


def optimize_for_inference(model, fuse=True, jit_compile="auto"):
    """A new eval-only ``keras.Model`` computing ``model(x, training=False)``; ``model`` is not
    modified. ``jit_compile`` goes to ``compile()`` (on TF, True means XLA; "auto" lets Keras pick)."""
    shape = (model.get_build_config() or {}).get("input_shape")
    if not shape or shape[1] is None or shape[2] is None:
        raise ValueError("optimize_for_inference needs a model built with a static input size (input_size=...)")
    fast = FastModel(model, fuse=fuse)
    fast(keras.KerasTensor((1, *shape[1:])))
    fast.compile(jit_compile=jit_compile)
    return fast
