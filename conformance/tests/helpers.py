"""What the tests share besides fixtures: running the CLI (in this process or a fresh one) and snippets,
skipping on missing packages, reading HDF5 files. The pytest process itself never imports keras
or tensorflow (tensorflow before torchvision or timm segfaults): Keras runs only in workers and
in the subprocesses started here."""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import io
import os
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


@contextlib.contextmanager
def own_process(pool, need=OWN_PROCESS):
    """Room for a large process of the test's own beside the session's workers, while the block
    runs: admitted as a pool request of ``need`` would be (under pytest-xdist, beside the other
    test process's requests too: ``memory.SharedAdmission``), then idle workers closed until it
    fits. No pool request inside: behind another process's waiting request it would wait forever."""
    with pool.admission.admit(need):
        if pool.memory_budget:
            pool.make_room(need)
        yield


def run_cli(*args, env=None, check=False, fresh=False):
    """``inception-bridge ARGS``; returns a CompletedProcess. In this process (``conformance.cli.main``,
    its output captured) unless ``fresh`` or ``env``: a fresh Python costs 2-3 s of imports per
    call. A call that would import Keras or TensorFlow here fails (``_KerasRefused``): it needs
    ``fresh=True``, as do tests of what only a whole process shows (log noise, missing extras)."""
    if fresh or env is not None:
        proc = subprocess.run([sys.executable, "-m", "conformance.cli", *map(str, args)], cwd=REPO,
                              env=environment(extra=env), capture_output=True, text=True)
    else:
        proc = _run_main([str(a) for a in args])
    if check and proc.returncode != 0:
        raise AssertionError(f"inception-bridge {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def _run_main(argv):
    from conformance.cli import main

    out, err, saved = io.StringIO(), io.StringIO(), dict(os.environ)
    guard = _KerasRefused()
    sys.meta_path.insert(0, guard)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.meta_path.remove(guard)
        for key in set(os.environ) - set(saved):  # the CLI sets the frameworks' quiet variables
            del os.environ[key]
        os.environ.update({k: v for k, v in saved.items() if os.environ.get(k) != v})
    return subprocess.CompletedProcess(["inception-bridge", *argv], code, out.getvalue(), err.getvalue())


# Never imported into a test process: they load TensorFlow (Keras through its module tree even
# on other backends), which crashes the process's next torchvision or timm import.
KERAS_MODULES = ("keras", "tensorflow", "tf2onnx", "tf_keras")


class _KerasRefused(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Found (``extras.installed`` still says yes) but refused on import (``KERAS_MODULES``)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name.partition(".")[0] in KERAS_MODULES else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise RuntimeError(f"this CLI call imports {module.__name__} in the test process: run it with fresh=True")


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


@contextlib.contextmanager
def grows_on_cue(nbytes):
    """(pid, grow): a bare interpreter that writes ``nbytes`` (resident) when ``grow()`` is called."""
    proc = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdin.readline(); b = b'x' * {nbytes}; "
                             "print(1, flush=True); sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def grow():
        proc.stdin.write(b"grow\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == b"1"

    try:
        yield proc.pid, grow
    finally:
        proc.stdin.close()
        proc.wait(10)
