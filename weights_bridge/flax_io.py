"""Flax NNX state files (.msgpack): ``flax.serialization`` msgpack of the model's pure state dict
(``nnx.Param`` and ``nnx.BatchStat`` only), the form ``nnx.to_pure_dict`` / ``replace_by_pure_dict``
round-trip. msgpack holds plain data: reading it never executes code.

Load one into a model yourself with::

    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    nnx.replace_by_pure_dict(state, flax.serialization.msgpack_restore(open(path, "rb").read()))
    nnx.update(model, state)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .checkpoint import Checkpoint, infer_head, infer_variant
from .errors import InputFileError, WeightsMismatchError
from .mapping import native_plan, plan, to_canonical, to_native


def _weight_filter():
    from flax import nnx

    return nnx.Any(nnx.Param, nnx.BatchStat)


# NNX leaf names of the canonical (torch) leaves; a "weight" is a BN's scale or a conv/linear kernel.
_LEAF = {"bias": "bias", "running_mean": "mean", "running_var": "var"}


def native_shapes(architecture, num_classes, aux_logits, variant="default") -> dict:
    """NNX state path ('a.b.0.kernel') -> shape, from the spec's canonical table: our NNX modules
    sit at the canonical module paths. Building even an abstract model (``nnx.eval_shape``) took
    20 s for Inception-ResNet-v2 (quadratic tracing of the RNG updates), most of a conversion;
    ``conformance/test_bridge_speed.py`` checks this table against the model's own state."""
    from impls.spec import model_spec
    from impls.spec.tensors import canonical_shapes

    from .layouts import canonical_key

    kw = {"variant": variant} if variant and variant != "default" else {}
    table = canonical_shapes(model_spec(architecture, num_classes=num_classes, aux_logits=aux_logits, **kw))
    out = {}
    for ck, shape in table.items():
        module, leaf = ck.rsplit(".", 1)
        native = ("scale" if f"{module}.running_var" in table else "kernel") if leaf == "weight" else _LEAF[leaf]
        nk = f"{module}.{native}"
        (back, layout), = canonical_key("flax", nk)
        if back != ck:
            raise AssertionError(f"flax layout rule maps {nk!r} to {back!r}, not {ck!r}")
        out[nk] = layout.native_shape(shape)
    return out


def _flatten(tree, prefix=""):
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def _nest(flat: dict) -> dict:
    root: dict = {}
    for key, v in flat.items():
        *parents, leaf = key.split(".")
        node = root
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return root


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    from flax import serialization

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'no such file'}")
    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack raises a zoo of types for corrupt input
        raise InputFileError(f"{path}: not a readable Flax msgpack state ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict):
        raise InputFileError(f"{path}: expected a nested dict of arrays, found {type(tree).__name__}")
    try:
        flat = dict(_flatten(tree))
    except RecursionError:
        raise InputFileError(f"{path}: nested too deeply to be a Flax state (expected a few levels)") from None
    for k, v in flat.items():
        if not isinstance(v, np.ndarray):
            raise InputFileError(f"{path}: entry {k!r} is a {type(v).__name__}, not an array")
    shapes = {ck: layout.canonical_shape(flat[nk].shape) for nk, (ck, layout) in plan("flax", flat, str(path)).items()}
    num_classes, aux = infer_head(architecture, shapes, str(path))
    ckpt = Checkpoint(architecture, {}, num_classes, aux, variant=infer_variant(architecture, shapes, aux))
    del tree  # ``flat`` holds the only references: consumed below, one tensor at a time
    ckpt.tensors = to_canonical("flax", flat, ckpt.expected_shapes(), str(path), allow_nonfinite, consume=True)
    return ckpt


def native_tensors(ckpt: Checkpoint) -> dict:
    shapes = native_shapes(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant)
    return to_native("flax", ckpt.tensors, shapes, f"flax {ckpt.architecture}")


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    """The bytes ``flax.serialization.msgpack_serialize`` gives the nested native state, streamed:
    one tensor is converted, packed and written at a time (``msgpack_serialize`` holds the native
    copies, the packed bytes and its growing buffer at once: about 4x the checkpoint at peak).
    ``conformance/test_bridge_speed.py`` checks the bytes are the same."""
    import msgpack
    from flax import serialization

    shapes = native_shapes(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant)
    where = f"flax {ckpt.architecture}"
    steps = native_plan("flax", ckpt.tensors, shapes, where)
    if any(ckpt.tensors[ck].nbytes > serialization.MAX_CHUNK_SIZE for ck, _ in steps.values()):
        tree = _nest(native_tensors(ckpt))  # flax splits such arrays into chunks: let it
        with atomic_path(path, overwrite) as tmp:
            tmp.write_bytes(serialization.msgpack_serialize(tree))
        return Path(path)
    packer = msgpack.Packer(default=serialization._msgpack_ext_pack, strict_types=True)

    def pack(f, node):
        f.write(packer.pack_map_header(len(node)))
        for key, child in sorted(node.items()):  # msgpack_serialize's jax.tree_map sorts dict keys
            f.write(packer.pack(key))
            if isinstance(child, dict):
                pack(f, child)
            else:
                ck, layout = child
                f.write(packer.pack(layout.to_native(np.asarray(ckpt.tensors[ck]))))

    with atomic_path(path, overwrite) as tmp, open(tmp, "wb") as f:
        pack(f, _nest(steps))
    return Path(path)


def load_into(model, ckpt: Checkpoint):
    """Assigns a checkpoint's tensors to a live NNX model (strict: every variable filled)."""
    from flax import nnx

    state = nnx.state(model, _weight_filter())
    shapes = {".".join(map(str, p)): tuple(v.get_value().shape) for p, v in nnx.to_flat_state(state)}
    flat = to_native("flax", ckpt.tensors, shapes, f"flax model {type(model).__name__}")
    nnx.replace_by_pure_dict(state, _nest(flat))
    nnx.update(model, state)
    return model


def build_model(architecture, pure_state: dict, seed=0, **model_kwargs):
    """A live NNX model holding ``pure_state`` (a nested dict, as in our .msgpack files), built
    abstractly: JAX compiles every initializer once per shape (about 25 s for GoogLeNet on two
    CPU cores) and loaded weights would overwrite them anyway."""
    import jax
    from flax import nnx

    from impls.flax_nnx import create_model

    abstract = nnx.eval_shape(lambda: create_model(architecture, **model_kwargs))
    graphdef, weights, rest = nnx.split(abstract, _weight_filter(), ...)
    nnx.replace_by_pure_dict(weights, pure_state)
    unfilled = [".".join(map(str, p)) for p, v in nnx.to_flat_state(weights)
                if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
    if unfilled:
        raise WeightsMismatchError(f"flax {architecture}: {len(unfilled)} variables left unfilled, e.g. {unfilled[0]!r}")
    keys = iter(range(1 << 30))

    def concrete(x):  # dropout RNG streams: fresh keys and zero counters
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(jax.random.key(seed), next(keys))
        return jax.numpy.zeros(x.shape, x.dtype)

    rest = jax.tree.map(concrete, rest)
    return nnx.merge(graphdef, weights, rest)


def load_model(path, architecture, seed=0, **model_kwargs):
    """Reads and checks a .msgpack file, then builds the NNX model holding it."""
    ckpt = read(path, architecture)
    if ckpt.variant != "default":
        model_kwargs = {"variant": ckpt.variant, **model_kwargs}
    kwargs = dict(num_classes=ckpt.num_classes, aux_logits=ckpt.aux_logits, **model_kwargs)
    native = to_native("flax", ckpt.tensors, native_shapes(architecture, ckpt.num_classes, ckpt.aux_logits,
                                                           ckpt.variant), str(path))
    return build_model(architecture, _nest(native), seed, **kwargs)


def from_model(model, architecture, allow_nonfinite=True) -> Checkpoint:
    """A live NNX model's weights as a canonical checkpoint."""
    from flax import nnx

    state = nnx.state(model, _weight_filter())
    flat = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}
    spec = model.spec
    names = [ck for ck, _ in plan("flax", flat, f"flax model {type(model).__name__}").values()]
    ckpt = Checkpoint(architecture, {}, spec.num_classes, bool(spec.aux_heads), transform_input=spec.transform_input,
                      variant=infer_variant(architecture, names, bool(spec.aux_heads)))
    ckpt.tensors = to_canonical("flax", flat, ckpt.expected_shapes(), f"flax model {type(model).__name__}",
                                allow_nonfinite)
    return ckpt
