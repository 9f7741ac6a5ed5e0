"""What the tests share besides fixtures: running the CLI and snippets in fresh processes,
skipping on missing packages, reading HDF5 files. The pytest process itself never imports keras
or tensorflow (tensorflow before torchvision or timm segfaults): Keras runs only in workers and
in the subprocesses started here."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conformance.launch import REPO, environment
from weights_bridge.extras import missing


# Room a test's own large process needs beside the session's workers (measured: a Keras-on-
# TensorFlow snippet with GoogLeNet 2.4 GiB, fid-stats 2.7 GiB). Slow tests that start one close
# idle workers first (the ``room`` fixture, ``WorkerPool.make_room``), as the pool's budget
# cannot see processes it did not start.
OWN_PROCESS = 3 * 2**30


def run_cli(*args, env=None, check=False):
    """``inception-bridge ARGS`` in a fresh process; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", *map(str, args)], cwd=REPO,
                          env=environment(extra=env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"inception-bridge {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def run_python(code: str, *args, process: str = "keras-tensorflow") -> str:
    """Runs ``code`` in a fresh Python in ``process``'s environment (Keras on TensorFlow by
    default; never in the pytest process); returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=environment(process),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def require(*modules):
    """Skip unless every module is installed, without importing it: keras/tensorflow must never
    be imported in the pytest process (a later torchvision or timm import would segfault)."""
    lacking = missing(modules)
    if lacking:
        pytest.skip(f"needs {', '.join(lacking)}")


def h5_datasets(path) -> dict:
    """Every dataset of an HDF5 file (a Keras ``.weights.h5``) by its path, as arrays."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def seeded(path, arch, seed=0, **kw):
    """Seeded trained-like weights of ``arch`` written to ``path`` (format by extension)."""
    from conformance.frameworks.torch_nn.seed import save_seeded

    save_seeded(arch, path, seed, overwrite=True, **kw)
    return path
