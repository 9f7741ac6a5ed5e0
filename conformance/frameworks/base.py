"""What every framework adapter shares: request dispatch, the model cache, array files.

An adapter turns a checkpoint into its framework's model (through the weights bridge's one loader
per framework) and runs the engine's requests on it: ``outputs`` (eval / train-mode outputs, BN
statistics, per-block capture), ``train`` (one training step), ``fast`` (the inference path),
``bench`` and a few framework-specific ones. Requests name arrays by file path; results are small
JSON values, or arrays written where the request says.
"""
from __future__ import annotations

import ctypes
import gc
import time

import numpy as np


def nchw(a) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))) if a.ndim == 4 else a


def nhwc(a) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(a), (0, 2, 3, 1)))


def outputs_dict(out, fields=None) -> dict:
    """A model's return value as {field: array}: the named tuple's fields, or "logits"."""
    if not isinstance(out, tuple):
        return {"logits": out}
    return dict(zip(fields or out._fields, out))


def save(path, arrays: dict):
    np.savez(path, **arrays)


def write_chunks(chunks, path) -> dict:
    """Writes a training step's chunks (see ``merged``) to an ``.npz`` as they come; returns where
    the time went: {"chunks": seconds making each chunk, "writing": seconds writing them}. Each
    written chunk's pages go back to the system before the next is made: without that the freed
    chunks stay resident (Inception-ResNet-v2's float64 step on keras-jax: 5.97 GiB, with: 5.35)."""
    made, writing = [], 0.0
    with NpzWriter(path) as sink:
        t = time.perf_counter()
        for chunk in chunks:
            t1 = time.perf_counter()
            sink.update(chunk)
            chunk = None
            return_freed_memory()
            made.append(round(t1 - t, 3))
            t = time.perf_counter()
            writing += t - t1
    return {"chunks": made, "writing": round(writing, 3)}


def merged(chunks) -> dict:
    """A training step's chunks (dicts of arrays, see the frameworks' ``train`` modules) as one dict."""
    out = {}
    for chunk in chunks:
        out.update(chunk)
    return out


class NpzWriter:
    """An ``.npz`` written array by array, as ``np.savez`` writes it (one ``.npy`` member each),
    so a training step's results go to disk as they are made instead of all held at once."""

    def __init__(self, path):
        import zipfile

        self._zip = zipfile.ZipFile(path, "w", allowZip64=True)

    def add(self, key, array):
        with self._zip.open(f"{key}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)

    def update(self, arrays: dict):
        for key, array in arrays.items():
            self.add(key, array)

    def close(self):
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_neutral(path):
    """The neutral checkpoint the engine hands every worker (read with the bridge's checks)."""
    from weights_bridge import neutral

    return neutral.read(path)


class ModelCache:
    """One loaded model per key. A train-mode request consumes its model (its BN statistics
    change), so the next request loads afresh. ``load_seconds`` adds up the time spent loading."""

    def __init__(self):
        self._models = {}
        self.load_seconds = 0.0

    def get(self, key, load, consume=False):
        if key not in self._models:
            t0 = time.perf_counter()
            self._models[key] = load()
            self.load_seconds += time.perf_counter() - t0
        return self._models.pop(key) if consume else self._models[key]

    def clear(self):
        self._models.clear()
        gc.collect()


def return_freed_memory():
    """Hands the heap's free pages back to the system (glibc's ``malloc_trim``). Without it a
    worker's size stays at its largest request's (freed tensors stay in the heap), and the
    pool's memory budget, which reads the workers' sizes, keeps closing workers that hold little."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class Adapter:
    """Dispatches ``handle(op, args)`` to the method named by ``OPS``; ``info`` describes the
    worker's numerics (device, matmul precision), recorded in every report."""

    OPS = ("outputs", "train", "fast", "bench", "fid_bench", "convert", "release", "timings")

    def __init__(self, process: str, started: float):
        self.process = process
        self.models = ModelCache()
        self.arch = None  # the architecture of the requests served last
        self.info = self.precision()
        self.busy = 0.0
        self.startup = time.time() - started  # interpreter start to ready: mostly the framework's imports

    def precision(self) -> dict:  # pragma: no cover - every adapter defines it
        raise NotImplementedError

    def handle(self, op: str, args: dict):
        if op not in self.OPS or not hasattr(self, op):
            raise ValueError(f"{self.process} worker has no request {op!r}")
        t0 = time.perf_counter()
        if args.get("arch", self.arch) != self.arch:  # another architecture's models and compiled
            if self.arch is not None:  # functions (other shapes) serve none of its requests
                self.release()
            self.arch = args["arch"]
        result = getattr(self, op)(**args)
        if op != "timings":
            return_freed_memory()
        seconds = time.perf_counter() - t0
        self.busy += seconds
        return result if op == "timings" else {**(result or {}), "seconds": round(seconds, 3)}

    def release(self):
        """Gives back what the requests left (loaded models, compiled functions) and keeps the
        imports: what a pool over its memory budget asks of an idle worker before closing it."""
        self.models.clear()
        self.clear_framework_caches()

    def clear_framework_caches(self):
        """The framework's compiled functions and per-model state (none kept by default)."""

    def timings(self):
        """Where this worker's time went: start-up (imports), loading models (building them,
        reading checkpoints), and the rest of its requests (compiling and computing); ``starts``
        counts processes where a pool adds up the timings of a worker closed and started again."""
        return {"starts": 1, "startup": self.startup, "load": self.models.load_seconds,
                "requests": self.busy - self.models.load_seconds}

    def convert(self, src, dst, fmt=None, src_format=None, architecture=None, variant=None):
        """The bridge's own conversion, here because the target format needs this worker's
        framework (keras.applications' files need Keras on TensorFlow)."""
        from weights_bridge import convert

        convert(src, dst, architecture, src_format=src_format, dst_format=fmt, overwrite=True, variant=variant)

    def fid_bench(self, **job):
        """FID feature-extraction throughput of one implementation (``conformance.frameworks.fid_bench``)."""
        from .fid_bench import rows

        return {"rows": rows(job)}
