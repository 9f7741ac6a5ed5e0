"""keras.applications per-block activations for ``verify --layers``: one functional sub-model whose
outputs are the Keras layers at our block boundaries, converted to NCHW like every other capture.

The boundaries are found by the bridge's structural walk (``weights_bridge.peers.keras_applications``
matches the Keras graph to our spec from the output backwards), never by layer names: the stem's
layers are auto-numbered, and a ``.keras`` file may rename any of them. For Inception v3 that gives
every stage: the stem convs and pools, ``mixed0``..``mixed10`` as ``Mixed_5b``..``Mixed_7c``,
``avg_pool`` as ``avgpool`` (and ``dropout``, which keras.applications does not have: eval and
dropout 0 make it the identity) and ``predictions`` as ``fc``. Any architecture the walker
handles (Inception-ResNet-v2 through its ``Walker``) is captured the same way; ``STAGE_LAYERS``
takes a per-architecture override where the walk is not wanted.
"""
from __future__ import annotations

from .capture import nchw

# architecture -> callable(model) -> {our stage name: Keras layer}, where the structural walk does
# not apply; e.g. a fixed name map: lambda m: {ours: m.get_layer(keras_name) for ours, keras_name in MAP.items()}
STAGE_LAYERS = {}


def stage_layers(model, arch):
    """{our stage name: the Keras layer whose output it is}, in our forward order."""
    if arch in STAGE_LAYERS:
        return STAGE_LAYERS[arch](model)
    from weights_bridge.peers import keras_applications as ka

    walker = ka._walk(model, int(model.outputs[0].shape[-1]), "keras.applications model", arch)
    return {name: walker.stages[name] for name, _ in walker.spec.stages if name in walker.stages}


def keras_applications_blocks(model, arch, x_nhwc, train=False):
    """Every stage's activation for an NHWC batch, as NCHW numpy arrays under our names."""
    import keras
    from keras import ops

    layers = stage_layers(model, arch)
    unique = list({id(layer): layer for layer in layers.values()}.values())  # dropout shares avgpool's layer
    sub = keras.Model(model.inputs, [layer.output for layer in unique])
    outs = sub(x_nhwc, training=train)
    by_layer = {id(layer): nchw(ops.convert_to_numpy(o)) for layer, o in zip(unique, outs)}
    return {name: by_layer[id(layer)] for name, layer in layers.items()}
