"""Shared fixtures: one pool of long-lived framework workers for the whole session, seeded
checkpoints, and one agreement run per architecture shared by every test that inspects it."""
from __future__ import annotations

import gc
import os
import shutil
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
from .shared_pool import PoolClient, PoolServer  # noqa: E402


TIMINGS = pytest.StashKey[dict]()
SHARED = pytest.StashKey[tuple]()  # the pytest-xdist controller's (pool, server, key)
# The workers' share of the suite's memory target (8 GB for the whole run on the 24 GB CI
# machine, this process and the CLI's own workers included): idle workers past it are closed.
WORKER_MEMORY = 4 * 2**30
# Under pytest-xdist (``-n 2``: ci/test.sh with no arguments, `all` or `quick`) the two test processes share
# their controller's pool: the budget then covers the whole run, test processes included, read
# from the controller's process tree. The rest of the 8 GB is room for a test's own short
# processes (a CLI run, a snippet). At 5 GiB (peak 5.75 GiB, sampled every 2 s) the budget closed
# and restarted workers 123 times in the whole suite: 640 s of imports, 15% of its CPU.
RUN_MEMORY = 6 * 2**30
# pytest-xdist hands the two test processes whole files, in collection order (ci/test.sh passes
# --no-loadscope-reorder; xdist's own order puts the files with the most tests first, and those
# are the short ones): longest first, so no long file starts last and runs on while the other
# process idles; test_transfer.py (its Keras fine-tuning runs alone) early, not in the last minute.
# Test time per file, whole suite, 2026-12-04 (seconds, both processes busy): training_models 1054,
# agreement 538, fast 292, peers 198, peers_irv2 196, data_parallel 196, bridge 170, fid_bench 138,
# keras_archive 116, training 99, bench 79, launch 58, bridge_deep_models 57, onnx 56, transfer 42.
LONGEST_FIRST = ("test_training_models.py", "test_agreement.py", "test_fast.py", "test_peers.py",
                 "test_peers_irv2.py", "test_data_parallel.py", "test_bridge.py", "test_fid_bench.py",
                 "test_keras_archive.py", "test_training.py", "test_bench.py", "test_transfer.py", "test_launch.py",
                 "test_bridge_deep_models.py", "test_onnx.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: within a file, as written


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
    functions (most of what a request costs) while the memory budget allows. Under pytest-xdist
    the controller's pool, shared by both test processes (``shared_pool``)."""
    shared = getattr(pytestconfig, "workerinput", {}).get("shared_pool")
    if shared:
        with PoolClient(**{**shared, "authkey": bytes.fromhex(shared["authkey"])}) as p:
            yield p
        return
    with WorkerPool(tmp_path_factory.mktemp("workers"), jobs=2, memory_budget=WORKER_MEMORY) as p:
        yield p
        pytestconfig.stash[TIMINGS] = p.timings()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """The pytest-xdist controller starts the run's one pool (its budget counts the whole run:
    this process's tree) and tells each test process where it is served."""
    if SHARED not in node.config.stash:
        key, shared_pool = os.urandom(32), WorkerPool(jobs=2, memory_budget=RUN_MEMORY, memory_scope=os.getpid())
        node.config.stash[SHARED] = shared_pool, PoolServer(shared_pool, key), key
    shared_pool, server, key = node.config.stash[SHARED]
    node.workerinput["shared_pool"] = {"address": server.address, "authkey": key.hex(), "memory_budget": RUN_MEMORY,
                                       "memory_scope": os.getpid()}


def pytest_unconfigure(config):
    """The pytest-xdist controller closes the run's pool and removes the files of its shared
    admission, once every test process has ended."""
    if getattr(config, "workerinput", None) is not None:  # a test process
        return
    shared_pool, server, _ = getattr(config, "stash", {}).get(SHARED, (None, None, None))
    if server is not None:
        server.close()
        shared_pool.close()
        shutil.rmtree(shared_pool.log_dir, ignore_errors=True)
    for path in shared_admission_files(os.getpid()):
        path.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter, config):
    """Where the workers' time went: start-up (imports), loading models, the rest of their requests."""
    if SHARED in config.stash:  # the pytest-xdist controller's pool, its test processes ended
        config.stash[TIMINGS] = config.stash[SHARED][0].timings()
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
