"""Flax NNX state files (.msgpack): ``flax.serialization`` msgpack of the model's pure state dict
(``nnx.Param`` and ``nnx.BatchStat`` only), the form ``nnx.to_pure_dict`` / ``replace_by_pure_dict``
round-trip. msgpack holds plain data: reading it never executes code.

``to_model(ckpt)`` is the one way a checkpoint becomes an NNX model; ``load_model(path, arch)``
reads a file first. By hand, with Flax alone::

    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    nnx.replace_by_pure_dict(state, flax.serialization.msgpack_restore(open(path, "rb").read()))
    nnx.update(model, state)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from impls.spec import model_spec
from impls.spec.tensors import canonical_shapes

from .atomic import atomic_path
from .checkpoint import Checkpoint, infer_head, infer_variant
from .errors import InputFileError, WeightsMismatchError
from .layouts import module_kind, native_key
from .mapping import native_plan, plan, to_canonical, to_native

REQUIRES = ("flax", "msgpack")  # modules its read and write import (extras.require, before either)


def weight_filter():
    """The NNX variables a checkpoint holds: parameters and BN running statistics."""
    from flax import nnx

    return nnx.Any(nnx.Param, nnx.BatchStat)


def native_shapes(architecture, num_classes, aux_logits, variant="default") -> dict:
    """NNX state path ('a.b.0.kernel') -> shape, from the spec's canonical table: our NNX modules
    sit at the canonical module paths. It needs no JAX: even an abstract model takes seconds
    (``abstract_model``: under 3 s for Inception-ResNet-v2 on two busy cores, 21-26 s before it
    counted its RNG keys in Python); the tests check this table against the model's own state."""
    table = canonical_shapes(model_spec(architecture, num_classes=num_classes, aux_logits=aux_logits,
                                        variant=variant))
    out = {}
    for ck, shape in table.items():
        nk, layout = native_key("flax", ck, module_kind(ck, table))
        out[nk] = layout.native_shape(shape)
    return out


def flatten(tree, prefix=""):
    """A nested dict's leaves as ('a.b.c', leaf)."""
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from flatten(v, key + ".")
        else:
            yield key, v


def nest(flat: dict) -> dict:
    """The inverse of ``flatten``: {'a.b.c': leaf} -> {'a': {'b': {'c': leaf}}}."""
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
        flat = dict(flatten(tree))
    except RecursionError:
        raise InputFileError(f"{path}: nested too deeply to be a Flax state (expected a few levels)") from None
    del tree  # ``flat`` holds the only references: consumed by ``from_native``, one tensor at a time
    return from_native(flat, architecture, str(path), allow_nonfinite)


def from_native(flat: dict, architecture, where: str, allow_nonfinite=False) -> Checkpoint:
    """A checkpoint from NNX state paths ('a.b.kernel') -> arrays, as read from a file (``where``):
    the head and variant read off the tensors, every tensor checked. Empties ``flat``."""
    for k, v in flat.items():
        if not isinstance(v, np.ndarray):
            raise InputFileError(f"{where}: entry {k!r} is a {type(v).__name__}, not an array")
    ckpt = checkpoint_for({k: v.shape for k, v in flat.items()}, architecture, where)
    ckpt.tensors = to_canonical("flax", flat, ckpt.expected_shapes(), where, allow_nonfinite, consume=True)
    return ckpt


def checkpoint_for(native_shapes: dict, architecture, where: str) -> Checkpoint:
    """The (empty) checkpoint that NNX state paths of these shapes belong to: the head and the
    variant read off them; each path must match one layout rule."""
    shapes = {ck: layout.canonical_shape(native_shapes[nk]) for nk, (ck, layout) in
              plan("flax", native_shapes, where).items()}
    num_classes, aux = infer_head(architecture, shapes, where)
    return Checkpoint(architecture, {}, num_classes, aux, variant=infer_variant(architecture, shapes, aux))


def native_tensors(ckpt: Checkpoint) -> dict:
    shapes = native_shapes(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant)
    return to_native("flax", ckpt.tensors, shapes, f"flax {ckpt.architecture}")


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    """The bytes ``flax.serialization.msgpack_serialize`` gives the nested native state, streamed:
    one tensor is converted, packed and written at a time (``msgpack_serialize`` holds the native
    copies, the packed bytes and its growing buffer at once: about 4x the checkpoint at peak).
    The tests check the bytes are the same."""
    import msgpack
    from flax import serialization

    shapes = native_shapes(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant)
    steps = native_plan("flax", ckpt.tensors, shapes, f"flax {ckpt.architecture}")
    if any(ckpt.tensors[ck].nbytes > serialization.MAX_CHUNK_SIZE for ck, _ in steps.values()):
        tree = nest(native_tensors(ckpt))  # flax splits such arrays into chunks: let it
        with atomic_path(path, overwrite) as tmp:
            tmp.write_bytes(serialization.msgpack_serialize(tree))
        return Path(path)
    # flax's own ext hook (numpy arrays as its "ndarray" extension), so the bytes are msgpack_serialize's
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
        pack(f, nest(steps))
    return Path(path)


def native_state(model, which=None) -> dict:
    """{state path: numpy array} of a live NNX model's variables (``which``: an nnx filter,
    default ``weight_filter()``), in whatever dtype they hold."""
    from flax import nnx

    state = nnx.state(model, which or weight_filter())
    return {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def to_model(ckpt: Checkpoint, seed=0, **overrides):
    """Our NNX model holding ``ckpt`` (``overrides``: ``create_model`` keywords, e.g. ``dropout=0.0``),
    built abstractly (``abstract_model``): JAX compiles every initializer once per shape (about
    25 s for GoogLeNet on two CPU cores) and the loaded weights would overwrite them anyway.
    Strict: every variable is filled, no tensor is left over."""
    import jax
    from flax import nnx

    from impls.flax_nnx import abstract_model

    abstract = abstract_model(ckpt.architecture, **ckpt.model_kwargs(**overrides))
    graphdef, weights, rest = nnx.split(abstract, weight_filter(), ...)
    shapes = {".".join(map(str, p)): tuple(v.get_value().shape) for p, v in nnx.to_flat_state(weights)}
    nnx.replace_by_pure_dict(weights, nest(to_native("flax", ckpt.tensors, shapes, f"flax {ckpt.architecture}")))
    unfilled = [".".join(map(str, p)) for p, v in nnx.to_flat_state(weights)
                if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
    if unfilled:
        raise WeightsMismatchError(f"flax {ckpt.architecture}: {len(unfilled)} variables left unfilled, "
                                   f"e.g. {unfilled[0]!r}")
    keys = iter(range(1 << 30))

    def concrete(x):  # dropout RNG streams: fresh keys and zero counters
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.fold_in(jax.random.key(seed), next(keys))
        return jax.numpy.zeros(x.shape, x.dtype)

    return nnx.merge(graphdef, weights, jax.tree.map(concrete, rest))


def load_model(path, architecture, seed=0, **overrides):
    """Reads and checks a .msgpack file, then builds the NNX model holding it (``to_model``)."""
    return to_model(read(path, architecture), seed, **overrides)


def from_model(model, architecture, allow_nonfinite=True) -> Checkpoint:
    """A live NNX model's weights as a canonical checkpoint."""
    flat = native_state(model)
    spec = model.spec
    where = f"flax model {type(model).__name__}"
    names = [ck for ck, _ in plan("flax", flat, where).values()]
    ckpt = Checkpoint(architecture, {}, spec.num_classes, bool(spec.aux_heads), transform_input=spec.transform_input,
                      variant=infer_variant(architecture, names, bool(spec.aux_heads)))
    ckpt.tensors = to_canonical("flax", flat, ckpt.expected_shapes(), where, allow_nonfinite)
    return ckpt
