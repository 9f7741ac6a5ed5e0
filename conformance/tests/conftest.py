"""Shared fixtures: one pool of long-lived framework workers for the whole session, seeded
checkpoints, and one agreement run per architecture shared by every test that inspects it."""
from __future__ import annotations

import gc
import os
import sys

import pytest

# Before torch loads (GNU OpenMP reads it once): the test processes, their workers and the CLI
# runs they start share the cores, and OpenMP threads that spin after each parallel region take
# them from the rest (``WorkerPool``'s ``shared_env``; the default tier's CPU time 964 -> 665 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from conformance.frameworks.base import return_freed_memory  # noqa: E402
from conformance.launch import WorkerPool  # noqa: E402
from conformance.memory import shared_admission_files  # noqa: E402

from .helpers import KERAS_MODULES, OWN_PROCESS, grows_on_cue, own_process, seeded  # noqa: E402


TIMINGS = pytest.StashKey[dict]()
# The workers' share of the suite's memory target (8 GB for the whole run on the 24 GB CI
# machine, this process and the CLI's own workers included): idle workers past it are closed.
WORKER_MEMORY = 4 * 2**30
# Under pytest-xdist (``-n 2``: ci/test.sh with no arguments or `all`) two test processes run with a
# pool each: the budget then covers the whole run, test processes included, read from the
# controller's process tree, so either pool closes its idle workers when the two together are
# over it. The rest of the 8 GB is room for a test's own short processes (a CLI run, a snippet).
RUN_MEMORY = 5 * 2**30


@pytest.fixture(autouse=True)
def _no_tensorflow_here():
    """Keras or TensorFlow loaded into a test process crashes its next torchvision or timm import:
    the test that loaded one fails (its Keras work belongs in a worker or a fresh process)."""
    before = {m for m in KERAS_MODULES if m in sys.modules}
    yield
    loaded = sorted(m for m in KERAS_MODULES if m in sys.modules and m not in before)
    assert not loaded, f"{', '.join(loaded)} loaded into the test process"


@pytest.fixture(autouse=True)
def _hand_back_freed_memory():
    """After each test, this process's freed heap pages go back to the system (the in-process
    checks build models and FID features; without it the process stays at its largest test's size)."""
    yield
    return_freed_memory()


@pytest.fixture(autouse=True, scope="module")
def _drop_a_modules_leftovers():
    """After each module: the cycles its models left collected, and JAX's compiled functions
    dropped (the in-process Flax checks compile each model they build, and JAX keeps those for
    the session); then the pages back to the system. Per module, as a full collection costs
    about 0.1 s, too much after each of the thousand tests."""
    yield
    gc.collect()
    if "jax" in sys.modules:  # never imported here just to clear it
        sys.modules["jax"].clear_caches()
    return_freed_memory()


@pytest.fixture(scope="session")
def pool(tmp_path_factory, pytestconfig):
    """Every test's framework workers: started once, each keeping its imports and compiled
    functions (most of what a request costs) while the memory budget allows."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the controller, our parent, holds the whole run
        budget = dict(memory_budget=RUN_MEMORY, memory_scope=os.getppid())
    else:
        budget = dict(memory_budget=WORKER_MEMORY)
    with WorkerPool(tmp_path_factory.mktemp("workers"), jobs=2, **budget) as p:
        yield p
        pytestconfig.stash[TIMINGS] = p.timings()
        if hasattr(pytestconfig, "workeroutput"):  # a pytest-xdist test process: the controller prints them
            pytestconfig.workeroutput["worker_timings"] = pytestconfig.stash[TIMINGS]


def pytest_unconfigure(config):
    """The pytest-xdist controller, whose test processes shared one admission (the pool fixture's
    ``memory_scope``), removes its files once they have all ended."""
    if getattr(config, "workerinput", None) is None:  # not a test process: maybe their controller
        for path in shared_admission_files(os.getpid()):
            path.unlink(missing_ok=True)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Under pytest-xdist, each test process's worker timings, a row per process and worker."""
    timings = node.workeroutput.get("worker_timings", {}) if hasattr(node, "workeroutput") else {}
    node.config.stash.setdefault(TIMINGS, {}).update({f"[{node.gateway.id}] {name}": t for name, t in timings.items()})


def pytest_terminal_summary(terminalreporter, config):
    """Where the workers' time went: start-up (imports), loading models, the rest of their requests."""
    timings = config.stash.get(TIMINGS, None)
    if timings:
        terminalreporter.section("worker time (seconds)")
        terminalreporter.write_line(f"{'worker':<42}{'starts':>7}{'start-up':>10}{'load':>10}{'requests':>10}")
        for name, t in sorted(timings.items()):
            terminalreporter.write_line(f"{name[:41]:<42}{t['starts']:>7.0f}{t['startup']:>10.1f}{t['load']:>10.1f}"
                                        f"{t['requests']:>10.1f}")


@pytest.fixture
def room(pool):
    """Room for one large process of the test's own (``helpers.own_process``) while it runs."""
    with own_process(pool, OWN_PROCESS):
        yield


@pytest.fixture
def ballast():
    """The pid of a bare interpreter holding 1 GiB it has written (resident), beside any pool."""
    with grows_on_cue(2**30) as (pid, grow):
        grow()
        yield pid


@pytest.fixture(scope="session")
def googlenet_pth(tmp_path_factory):
    """A seeded torchvision-compatible GoogLeNet state_dict file with O(1) activations."""
    return seeded(tmp_path_factory.mktemp("weights") / "googlenet.pth", "googlenet", seed=1)


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory):
    """Seeded FID Inception weights in pytorch-fid's file layout (torchvision's names, 1008 classes)."""
    return seeded(tmp_path_factory.mktemp("fid") / "pt_inception.pth", "inception_v3", seed=0, variant="fid",
                  aux_logits=False)


@pytest.fixture(scope="session")
def matrix(pool, tmp_path_factory):
    """One agreement run per architecture (every installed implementation, default tasks)."""
    from conformance.agreement import matrix as m
    from conformance.agreement.tasks import default_tasks

    runs = {}

    def get(arch):
        if arch not in runs:
            workdir = tmp_path_factory.mktemp(f"matrix-{arch}")
            results, errors, precision, _ = m.agreement(arch, workdir, pool)
            impls = sorted({r.a for r in results} | {r.b for r in results} | set(errors))
            runs[arch] = dict(results=results, errors=errors, precision=precision, workdir=workdir, impls=impls,
                              tasks=default_tasks(arch))
        return runs[arch]

    return get


@pytest.fixture(scope="session")
def material(googlenet_pth, tmp_path_factory):
    """The valid files every hostile-input case derives its bad one from (read-only)."""
    from .hostile import Material

    return Material(tmp_path_factory.mktemp("material"), googlenet_pth)
