"""The worker pool: a memory budget makes room by what closing a worker costs, counts what a
worker holds toward its next request's need, closes idle workers and starts them again when
asked, with their time still counted; a worker's failure comes back as an error naming it."""
import os
import time

import pytest

from conformance.launch import WorkerError, WorkerPool
from conformance.memory import ALONE, memory_bytes, shared_admission_files, tree_memory_bytes

from .helpers import grows_on_cue

GB = 2**30


def test_memory_budget_closes_idle_workers_and_restarts_them(tmp_path):
    with WorkerPool(tmp_path, jobs=1, memory_budget=1) as pool:  # 1 byte: no worker fits
        first = pool.request("torch", "timings")
        assert pool.running() == [], "the idle worker over budget was not closed"
        second = pool.request("torch", "timings")
        assert first["startup"] > 0 and second["startup"] > 0
        total = pool.timings()["torch"]
        assert total["starts"] == 2
        assert total["startup"] == pytest.approx(first["startup"] + second["startup"], rel=1e-6)


@pytest.fixture
def scoped_admission():
    """``memory_scope`` for a pool of the test; its admission files (which the run's controller
    removes for its own scope, conftest.pytest_unconfigure) removed after the test."""
    files = []

    def scope(pid):
        files.extend(shared_admission_files(pid))  # named by the pid's start: read while it runs
        return pid

    yield scope
    for path in files:
        path.unlink(missing_ok=True)


@pytest.fixture
def flax_googlenet_eval(tmp_path, googlenet_pth):
    """The arguments of a Flax GoogLeNet evaluation at 96 px (less ``out``): it loads a model."""
    import numpy as np

    from weights_bridge import convert

    from .helpers import require

    require("flax")
    convert(googlenet_pth, tmp_path / "g.neutral", "googlenet")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((1, 3, 96, 96), dtype=np.float32))
    return dict(impl="flax", arch="googlenet", weights={"neutral": str(tmp_path / "g.neutral")}, config={},
                mode="eval", input=str(tmp_path / "x.npy"))


def test_over_budget_an_idle_worker_gives_back_its_model_before_any_is_closed(tmp_path, flax_googlenet_eval):
    """A ``release`` (models and compiled functions dropped, imports kept) costs far less than
    a start-up: the pool asks it of an idle worker first and closes one only if that is not enough."""
    import numpy as np

    with WorkerPool(tmp_path / "logs", jobs=1, memory_budget=64 * GB) as pool:
        pool.request("flax", "outputs", out=str(tmp_path / "1.npz"), **flax_googlenet_eval)
        worker = pool.worker("flax")
        held = memory_bytes(worker.proc.pid)
        pool.make_room(64 * GB - held + 1)  # one byte over
        assert pool.running() == ["flax"], "closed although giving back its model was enough"
        assert worker.released and memory_bytes(worker.proc.pid) < held - 32 * 2**20
        pool.make_room(64 * GB)  # released already: now it closes
        assert pool.running() == []
        pool.request("flax", "outputs", out=str(tmp_path / "2.npz"), **flax_googlenet_eval)
    with np.load(tmp_path / "1.npz") as a, np.load(tmp_path / "2.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_what_a_worker_holds_counts_toward_its_next_need(tmp_path, flax_googlenet_eval):
    """A need is what a worker may grow by (memory.eval_memory: a matrix's growth on one
    worker); one that holds its model already (the matrix's next size) has grown by part of it,
    and the pool makes room for the rest alone: the idle worker beside it stays."""
    with WorkerPool(tmp_path / "logs", jobs=1, memory_budget=64 * GB) as pool:
        pool.request("flax", "outputs", out=str(tmp_path / "1.npz"), **flax_googlenet_eval)
        pool.request("torch", "timings")  # idle beside it
        flax = pool.worker("flax")
        grown = flax.grown()
        assert flax.startup > 0 and grown > 32 * 2**20, (flax.startup, grown)
        # the budget, once the sizes are known: the two workers and half of what flax grew by
        pool.memory_budget = pool.held() + grown // 2
        pool.request("flax", "outputs", out=str(tmp_path / "2.npz"), need=grown, **flax_googlenet_eval)
        assert pool.running() == ["flax", "torch"], "room was made for what the worker held already"
        pool.request("flax", "outputs", out=str(tmp_path / "3.npz"), need=2 * grown, **flax_googlenet_eval)
        assert pool.running() == ["flax"], "a need past what it holds and the budget's slack left the idle worker"


def test_over_budget_the_idle_worker_cheapest_to_restart_closes_first(tmp_path):
    """Closing a worker costs its start-up when it is next asked for (Keras on TensorFlow ~6 s,
    torch ~2 s, Flax ~1 s): of two idle workers of about one size the cheaper to restart goes."""
    slow, fast = {"WHICH": "slow"}, {"WHICH": "fast"}
    with WorkerPool(tmp_path, jobs=1, memory_budget=64 * GB) as pool:
        for costly in (slow, fast):  # each in turn: the start-up decides, not the name or the order
            for env in (slow, fast):
                pool.request("torch", "timings", env=env)  # started again if it was closed
                assert pool.worker("torch", env).startup > 0  # measured as it started
                pool.worker("torch", env).startup = 100.0 if env is costly else 1.0
            pool.make_room(64 * GB - pool.held() + 64 * 2**20)  # 64 MiB over: one of them closes
            assert pool.running() == [f"torch WHICH={costly['WHICH']}"], "the worker cheaper to restart stayed"


def test_a_budget_over_the_process_tree_counts_processes_beside_the_pool(tmp_path, ballast, scoped_admission):
    """Under pytest-xdist the pools of both test processes share one budget over the run's tree:
    the ballast is no worker of the pool, yet it puts the tree over the budget."""
    with WorkerPool(tmp_path, jobs=1, memory_budget=GB) as own:
        own.request("torch", "timings")
        assert memory_bytes(own.worker("torch").proc.pid) < GB / 2 and own.running() == ["torch"]  # it fits
    beside = tree_memory_bytes(os.getpid()) - tree_memory_bytes(ballast)  # this process, no ballast
    with WorkerPool(tmp_path, jobs=1, memory_budget=beside + GB, memory_scope=scoped_admission(os.getpid())) as run:
        run.request("torch", "timings")
        assert run.running() == [], "the idle worker stayed although the ballast puts the tree over the budget"


def test_a_scoped_pool_closes_idle_workers_between_its_requests(tmp_path, scoped_admission):
    """Under pytest-xdist the other test process grows while this pool has nothing to ask: its
    idle worker still closes (the tree is checked every second), not only around its requests.
    The scope here is a process that grows on cue, so nothing else of the run moves the count."""
    with grows_on_cue(GB) as (pid, grow), \
            WorkerPool(tmp_path, jobs=1, memory_budget=GB // 2, memory_scope=scoped_admission(pid)) as run:
        run.request("torch", "timings")
        assert run.running() == ["torch"]  # the scope holds a bare interpreter: well within 0.5 GiB
        grow()
        deadline = time.monotonic() + 10
        while run.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.running() == [], "the idle worker stayed while the scope grew past the budget"


def test_a_large_request_closes_idle_workers_before_it_starts(tmp_path):
    with WorkerPool(tmp_path, jobs=1, memory_budget=64 * GB) as pool:
        pool.request("torch", "timings")
        assert pool.running() == ["torch"]  # well within the budget: kept
        pool.request("torch", "timings", env={"SECOND": "1"}, need=64 * GB - 1)
        assert pool.running() == ["torch SECOND=1"], "the idle worker stayed beside a request that needs the whole budget"
        pool.make_room(ALONE)  # what a caller does before a large process of its own
        assert pool.running() == [], "an idle worker stayed beside a process that runs alone"
        pool.request("torch", "timings", need=ALONE)
        assert pool.running() == [], "a worker that ran alone (its size is its request's) stayed"
        pool.request("torch", "timings", need=64 * GB)  # the budget itself: alone too
        assert pool.running() == []


def test_unbounded_pool_keeps_its_worker(tmp_path):
    with WorkerPool(tmp_path, jobs=1) as pool:
        pool.request("torch", "timings")
        pid = pool.worker("torch").proc.pid
        pool.request("torch", "timings")
        assert pool.worker("torch").proc.pid == pid and pool.running() == ["torch"]


def _worker_environment(pool) -> dict:
    pool.request("torch", "timings")  # started: /proc shows its environment from exec on
    with open(f"/proc/{pool.worker('torch').proc.pid}/environ", "rb") as f:
        env = dict(v.decode().partition("=")[::2] for v in f.read().split(b"\0") if v)
    assert "PYTHONPATH" in env  # read, not empty
    return env


@pytest.mark.parametrize("jobs, chosen, expected", [(2, None, "PASSIVE"), (1, None, None), (2, "ACTIVE", "ACTIVE")])
def test_workers_side_by_side_wait_passively_unless_told(tmp_path, monkeypatch, jobs, chosen, expected):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # the suite's own choice (conftest)
    if chosen:
        monkeypatch.setenv("OMP_WAIT_POLICY", chosen)
    with WorkerPool(tmp_path, jobs=jobs) as pool:
        assert _worker_environment(pool).get("OMP_WAIT_POLICY") == expected


def test_unknown_request_names_the_worker(tmp_path):
    with WorkerPool(tmp_path, jobs=1) as pool:
        with pytest.raises(WorkerError, match="torch worker has no request 'nonsense'"):
            pool.request("torch", "nonsense")


def test_describe_names_the_input_size():
    from conformance.steps import describe

    for name, size in (("input-4x299.npy", 299), ("input-2x274-pixels.npy", 274)):  # the FID Inception's pixels
        assert describe("torch", "outputs", {"arch": "inception_v3", "mode": "eval", "input": f"/w/{name}"}) == \
            f"torch outputs inception_v3 eval {size}"


def test_a_worker_serves_one_architecture_at_a_time():
    """Another architecture's models and compiled functions (other shapes) serve no request of
    this one: a worker drops them when the architecture changes, and only then."""
    from conformance.frameworks.base import Adapter

    class Counting(Adapter):
        cleared = 0

        def precision(self):
            return {}

        def outputs(self, arch):
            self.models.get(arch, object)

        def clear_framework_caches(self):
            self.cleared += 1

    worker = Counting("counting", time.time())
    for arch, cleared in (("googlenet", 0), ("googlenet", 0), ("inception_v3", 1), ("inception_v3", 1)):
        worker.handle("outputs", {"arch": arch})
        assert worker.cleared == cleared and worker.models.get(arch, lambda: None) is not None
    worker.handle("release", {})
    assert worker.cleared == 2 and worker.models.get("inception_v3", lambda: None) is None
