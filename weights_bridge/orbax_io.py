"""Flax NNX Orbax checkpoints: the folder ``ocp.StandardCheckpointer().save(path, state)`` writes
for ``state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))`` (the variables a ``.msgpack``
holds: parameters and BN running statistics; a model's dropout RNG streams are not weights).
``_METADATA`` (JSON) names every leaf; the arrays are zarr in an OCDBT database read by
tensorstore. Reading never unpickles or imports anything the folder names.

Each leaf is a Variable's value: ``conv1.conv.kernel.value`` (a state saved as
``nnx.to_pure_dict(state)``, without ``.value``, reads the same). Names, layouts and every check
are the ``.msgpack`` ones (``flax_io.from_native``). By hand, with Flax and Orbax alone::

    abstract = nnx.eval_shape(lambda: create_model("googlenet"))
    graphdef, state, rest = nnx.split(abstract, nnx.Any(nnx.Param, nnx.BatchStat), ...)
    state = ocp.StandardCheckpointer().restore(path, state)
    model = nnx.merge(graphdef, state, rest)   # rest: dropout RNG streams, give them keys to train

``flax_io.to_model(read(path, arch))`` builds the model with concrete RNG streams.
"""
from __future__ import annotations

import contextlib
import gc
import logging as pylogging
import sys
import time
import warnings
from collections import namedtuple
from pathlib import Path

import numpy as np

from . import flax_io
from .atomic import atomic_path
from .checkpoint import Checkpoint, check_architecture
from .errors import InputFileError
from .jsonfile import read_json
from .mapping import check_canonical, native_plan, plan

TREE = "_METADATA"  # the tree of leaves, JSON
MARKERS = (TREE, "_CHECKPOINT_METADATA", "manifest.ocdbt")  # any one names an Orbax folder
VALUE = "value"  # an nnx.State leaf is its Variable's ``value``
MAX_TREE_BYTES = 64 << 20
ARRAY_TYPES = ("jax.Array", "np.ndarray")  # the value types Orbax records for arrays
REQUIRES = ("jax", "orbax", "tensorstore", "etils", "absl")  # modules its read and write import
Header = namedtuple("Header", "shape dtype")  # an array's zarr header: checked before its data is read


def is_checkpoint(path) -> bool:
    """Whether ``path`` is a folder laid out as an Orbax checkpoint (detection by layout)."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in MARKERS)


@contextlib.contextmanager
def _quiet():
    """Orbax logs through absl (errors too, from its threads, for a failure the bridge reports in
    one line of its own) and asyncio logs the futures it abandons: silenced while it writes."""
    from absl import logging

    quiet_abandoned_writes()
    level, asyncio_log = logging.get_verbosity(), pylogging.getLogger("asyncio")
    logging.set_verbosity(logging.FATAL)
    asyncio_log.disabled = True  # "exception was never retrieved" for the writes abandoned after a failure
    try:
        yield
    finally:
        logging.set_verbosity(level)
        asyncio_log.disabled = False


def quiet_abandoned_writes():
    """After a failed write Orbax closes its asyncio loop while tensorstore still completes the
    other writes; each completion's ``loop.call_soon_threadsafe`` raises "Event loop is closed"
    inside tensorstore's callback, which Python reports through ``sys.unraisablehook`` (a
    traceback on stderr per leaf, seconds after the bridge's error). That one message is dropped,
    process-wide (the callbacks outlive the call); every other goes to the previous hook."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_callbacks", False):
        return

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            previous(unraisable)

    hook.drops_closed_loop_callbacks = True
    sys.unraisablehook = hook
    # The writes a failure abandoned are coroutines never awaited: Python warns as each is freed
    # (at the bridge's gc.collect, or later), a line per leaf. This one warning, process-wide too.
    abandoned = r"coroutine 'async_serialize_from_host\.<locals>\.write_fragment' was never awaited"
    warnings.filterwarnings("ignore", abandoned, RuntimeWarning)


def _settle(folder: Path, quiet_s=0.5, timeout_s=20.0):
    """Waits until nothing in ``folder`` has changed for ``quiet_s``: after a failed save, Orbax's
    threads and tensorstore's pending writes go on creating files in the temporary folder, which
    must be removed only once they have stopped (or it comes back, empty)."""
    def snapshot():
        try:
            return sorted((str(p), p.stat().st_size) for p in folder.rglob("*"))
        except OSError:  # a file vanished while listed: still changing
            return None

    last, stable_since, deadline = snapshot(), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() < deadline and time.monotonic() - stable_since < quiet_s:
        time.sleep(0.1)
        now = snapshot()
        if now != last or now is None:
            last, stable_since = now, time.monotonic()


def _tree(path: Path) -> dict:
    """``_METADATA``, checked: a small JSON object with a tree of leaves and the storage flags."""
    tree = path / TREE
    data = read_json(tree, f"an Orbax checkpoint folder holds the file {TREE} naming its leaves", MAX_TREE_BYTES,
                     f"expected a JSON tree of at most {MAX_TREE_BYTES}")
    if not isinstance(data, dict) or not isinstance(data.get("tree_metadata"), dict):
        raise InputFileError(f"{tree}: expected a JSON object with a 'tree_metadata' object, found "
                             f"{type(data).__name__ if not isinstance(data, dict) else 'none'}")
    for flag in ("use_ocdbt", "use_zarr3"):
        if not isinstance(data.get(flag, False), bool):
            raise InputFileError(f"{tree}: field {flag!r} must be a bool, found {repr(data[flag])[:80]}")
    return data


def _leaf_names(path: Path, data: dict) -> list:
    """Every leaf's stored name ('a.b.kernel.value': its keys joined, as Orbax names the
    array), after checking each is an array that was saved."""
    names = []
    for entry in data["tree_metadata"].values():
        keys = entry.get("key_metadata") if isinstance(entry, dict) else None
        value = entry.get("value_metadata") if isinstance(entry, dict) else None
        if not (isinstance(keys, list) and keys and isinstance(value, dict)
                and all(isinstance(k, dict) and isinstance(k.get("key"), (str, int)) for k in keys)):
            raise InputFileError(f"{path / TREE}: a leaf must have key_metadata [{{key, key_type}}, ...] and "
                                 f"value_metadata, found {repr(entry)[:120]}")
        name = ".".join(str(k["key"]) for k in keys)
        kind = value.get("value_type")
        if kind not in ARRAY_TYPES or value.get("skip_deserialize"):
            raise InputFileError(f"{path}: leaf {name!r} is a {kind!r}{' not saved' if value.get('skip_deserialize') else ''}, "
                                 f"expected an array ({' or '.join(ARRAY_TYPES)})")
        names.append(name)
    if not names:
        raise InputFileError(f"{path / TREE}: names no leaves")
    return names


def _spec(folder: Path, name: str, data: dict) -> dict:
    """The tensorstore spec Orbax reads a leaf with (zarr, in one OCDBT database by default);
    a missing chunk is an error, never zeros."""
    ocdbt = data.get("use_ocdbt", True)
    kvstore = ({"driver": "ocdbt", "base": {"driver": "file", "path": f"{folder}/"}, "path": name} if ocdbt
               else {"driver": "file", "path": f"{folder}/{name}"})
    return {"driver": "zarr3" if data.get("use_zarr3", False) else "zarr", "kvstore": kvstore,
            "recheck_cached_data": False, "recheck_cached_metadata": False, "fill_missing_data_reads": False}


def _reason(e: Exception, folder: Path) -> str:
    """tensorstore's message without the spec it may append (a page of JSON), its file names
    relative to the checkpoint folder (which the error names already)."""
    text = " ".join(str(e).split()).split(" [tensorstore_spec=")[0]
    return text.replace(f'"{folder}/', '"./')[:400]


def read(path, architecture, allow_nonfinite=False) -> Checkpoint:
    """Leaves read straight through tensorstore, synchronously, as Orbax's restore reads them
    (Orbax's own asyncio loop, closed on the first failure, leaves tensorstore callbacks printing
    tracebacks after a corrupt read). Every leaf's shape and dtype is checked against the
    architecture before any data is read."""
    import tensorstore as ts

    path = Path(path)
    if not path.is_dir():
        raise InputFileError(f"{path}: {'no such folder' if not path.exists() else 'a file'}; an Orbax checkpoint "
                             f"is a folder with {TREE}")
    check_architecture(architecture, str(path))
    data = _tree(path)
    names = _leaf_names(path, data)
    folder = path.resolve()

    tensors = {}  # leaf name -> "tensor 'fc.bias', shape (1000,)", once the headers are checked

    def each(futures, what):
        out = {}
        for name, future in futures.items():
            try:
                out[name] = future.result()
            except Exception as e:  # tensorstore raises ValueError for every storage error
                raise InputFileError(f"{path}: leaf {name!r}{tensors.get(name, '')}: {what} ({_reason(e, folder)})") from None
        return out

    stores = each({n: ts.open(_spec(folder, n, data), open=True, read=True) for n in names}, "unreadable array header")
    state = all(n.rpartition(".")[2] == VALUE for n in names)  # nnx.State: each Variable's value; else a pure dict
    native = {n.rpartition(".")[0] if state else n: n for n in names}
    headers = {k: Header(tuple(stores[n].shape), stores[n].dtype.numpy_dtype) for k, n in native.items()}
    ckpt = flax_io.checkpoint_for({k: h.shape for k, h in headers.items()}, architecture, str(path))
    mapping = plan("flax", headers, str(path))
    check_canonical({ck: Header(layout.canonical_shape(headers[k].shape), headers[k].dtype)
                     for k, (ck, layout) in mapping.items()},
                    ckpt.expected_shapes(), str(path), allow_nonfinite=True)  # misshapen leaves fail before any read
    tensors.update({n: f" (tensor {mapping[k][0]!r}, shape {headers[k].shape})" for k, n in native.items()})
    arrays = each({n: stores[n].read() for n in names}, "unreadable data")
    return flax_io.from_native({k: arrays.pop(n) for k, n in native.items()}, architecture, str(path), allow_nonfinite)


def write(ckpt: Checkpoint, path, overwrite=False) -> Path:
    """The folder ``StandardCheckpointer().save`` writes for the model's ``nnx.state`` (jax
    arrays, leaves ``<state path>.value``), written synchronously into a temporary folder that
    is renamed when complete."""
    import jax
    import orbax.checkpoint as ocp
    from etils import epath

    shapes = flax_io.native_shapes(ckpt.architecture, ckpt.num_classes, ckpt.aux_logits, ckpt.variant)
    steps = native_plan("flax", ckpt.tensors, shapes, f"{path} (orbax {ckpt.architecture})")
    state = flax_io.nest({f"{nk}.{VALUE}": jax.numpy.asarray(layout.to_native(np.asarray(ckpt.tensors[ck])))
                          for nk, (ck, layout) in steps.items()})  # one native copy at a time
    with atomic_path(path, overwrite) as tmp, _quiet():
        failure = None
        checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())
        try:
            checkpointer.save(epath.Path(tmp.resolve()), args=ocp.args.StandardSave(state))
        except Exception as e:  # tensorstore's ValueError for a full disk, OSError, ...
            failure = f"{type(e).__name__}: {_reason(e, tmp.parent)}"
        finally:
            checkpointer.close()
        if failure:  # raised here, holding no frame of Orbax's: its abandoned futures are freed now, quietly
            _settle(tmp.parent)
            gc.collect()
            raise OSError(failure)
    return Path(path)


def load_model(path, architecture, seed=0, **overrides):
    """Reads and checks an Orbax folder, then builds the NNX model holding it (``flax_io.to_model``)."""
    return flax_io.to_model(read(path, architecture), seed, **overrides)
