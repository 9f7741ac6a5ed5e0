"""Shared fixtures. The pytest process itself never imports keras or tensorflow (tensorflow
before torchvision segfaults): Keras runs only in worker and CLI subprocesses."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, env=None, check=False):
    """``inception-bridge ARGS`` in a fresh process; returns the CompletedProcess."""
    from conformance.matrix import _jax_cache_env

    proc = subprocess.run([sys.executable, "-m", "weights_bridge.cli", *map(str, args)], cwd=REPO,
                          env={**os.environ, **_jax_cache_env(), **(env or {})}, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"inception-bridge {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    """One full agreement run per architecture, shared by every test that inspects it."""
    from conformance import matrix as m

    runs = {}

    def get(arch):
        if arch not in runs:
            workdir = tmp_path_factory.mktemp(f"matrix-{arch}")
            impls = m.implementations(arch)
            tasks = m.default_tasks(arch)
            weights = {arch: m.prepare_weights(arch, workdir / "weights")}
            out_dirs = m.run_workers(impls, tasks, weights, workdir)
            results, errors = m.compare(tasks, impls, out_dirs, weights)
            runs[arch] = dict(impls=impls, tasks=tasks, weights=weights[arch], out_dirs=out_dirs,
                              results=results, errors=errors)
        return runs[arch]

    return get


@pytest.fixture(scope="session")
def googlenet_pth(tmp_path_factory):
    """A seeded torchvision-compatible GoogLeNet state_dict file with O(1) activations."""
    path = tmp_path_factory.mktemp("weights") / "googlenet.pth"
    subprocess.run([sys.executable, "-m", "conformance.weights", "googlenet", str(path), "--seed", "1"],
                   cwd=REPO, check=True)
    return path


@pytest.fixture(scope="session")
def material(googlenet_pth, tmp_path_factory):
    """The valid files every hostile-input case derives its bad one from (read-only)."""
    from conformance.hostile import Material

    return Material(tmp_path_factory.mktemp("material"), googlenet_pth)


def require(*modules):
    """Skip unless every module is installed, without importing it: keras/tensorflow must never
    be imported in the pytest process (a later torchvision or timm import would segfault)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def run_keras(code: str) -> str:
    """Runs ``code`` in a fresh Python on Keras' TensorFlow backend (never in the pytest process);
    returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def h5_datasets(path) -> dict:
    """Every dataset of an HDF5 file (a Keras ``.weights.h5``) by its path, as arrays."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
