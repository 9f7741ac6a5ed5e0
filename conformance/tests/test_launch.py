"""The worker pool: a memory budget closes idle workers and starts them again when asked, with
their time still counted, and admits large requests one at a time; a worker's failure comes back
as an error naming it."""
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from conformance.launch import WorkerError, WorkerPool
from conformance.memory import (ALONE, Admission, SharedAdmission, admission, eval_memory, parameter_count,
                                memory_bytes, shared_admission_files, tree_memory_bytes)

GB = 2**30


def test_memory_bytes_of_a_live_and_a_missing_process():
    assert memory_bytes(os.getpid()) > 10 * 2**20  # this interpreter, numpy and pytest loaded
    assert memory_bytes(2**22 + 7) == 0  # above Linux's pid limit: nothing there


def _vm_rss(pid):  # what the pool read before: the resident size, shared pages in full
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_pages_two_processes_share_count_once():
    """A forked child shares its parent's 512 MiB copy-on-write, as the workers and test
    processes share the frameworks' libraries: each resident size holds all of it, the two
    processes' memory holds it once."""
    pair = subprocess.Popen([sys.executable, "-c", "import os, sys; b = b'x' * 2**29; child = os.fork(); "
                             "child and print(child, flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        pids = [pair.pid, int(pair.stdout.readline())]
        assert sum(map(_vm_rss, pids)) > 2 * 2**29
        assert 2**29 < sum(map(memory_bytes, pids)) < 1.25 * 2**29
    finally:
        pair.stdin.close()
        pair.wait()


@contextlib.contextmanager
def _grows_on_cue(nbytes):
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


def test_growth_after_a_read_shows_at_once():
    """The shared pages are read every 30 s; what a process allocates in between counts at once."""
    with _grows_on_cue(2**29) as (pid, grow):
        before = memory_bytes(pid)
        grow()
        assert memory_bytes(pid) >= before + 2**29


def test_parameter_count_is_torchvisions_and_an_evaluation_declares_what_was_measured(googlenet_pth, tmp_path):
    """The count (from the neutral header alone) is the state_dict's, BN statistics included;
    the agreement matrix's declared need covers the growth measured on the slow tier's largest
    evaluation (keras-torch, Inception-ResNet-v2 at 299: +2.1 GiB; 55.8M parameters, timm's count)."""
    import torch

    import weights_bridge as wb

    wb.convert(googlenet_pth, tmp_path / "g.neutral", "googlenet")
    state = torch.load(googlenet_pth, weights_only=True)
    assert parameter_count(tmp_path / "g.neutral") == sum(
        v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert eval_memory(55_843_464) >= 2.1 * 2**30


def test_memory_budget_closes_idle_workers_and_restarts_them(tmp_path):
    with WorkerPool(tmp_path, jobs=1, memory_budget=1) as pool:  # 1 byte: no worker fits
        first = pool.request("torch", "timings")
        assert pool.running() == [], "the idle worker over budget was not closed"
        second = pool.request("torch", "timings")
        assert first["startup"] > 0 and second["startup"] > 0
        total = pool.timings()["torch"]
        assert total["starts"] == 2
        assert total["startup"] == pytest.approx(first["startup"] + second["startup"], rel=1e-6)


@contextlib.contextmanager
def _gigabyte_process():
    """A child process holding 1 GiB it has written (resident), beside any pool."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = b'x' * 2**30; print(1, flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"1"
        yield child
    finally:
        child.stdin.close()
        child.wait(10)


@pytest.fixture
def ballast():
    with _gigabyte_process() as child:
        yield child


def test_over_budget_an_idle_worker_gives_back_its_model_before_any_is_closed(tmp_path, googlenet_pth):
    """A ``release`` (models and compiled functions dropped, imports kept) costs far less than
    a start-up: the pool asks it of an idle worker first and closes one only if that is not enough."""
    import numpy as np

    from weights_bridge import convert

    from .helpers import require

    require("flax")
    convert(googlenet_pth, tmp_path / "g.neutral", "googlenet")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((1, 3, 96, 96), dtype=np.float32))
    ask = dict(impl="flax", arch="googlenet", weights={"neutral": str(tmp_path / "g.neutral")}, config={},
               mode="eval", input=str(tmp_path / "x.npy"))
    with WorkerPool(tmp_path / "logs", jobs=1, memory_budget=64 * GB) as pool:
        pool.request("flax", "outputs", out=str(tmp_path / "1.npz"), **ask)
        worker = pool.worker("flax")
        held = memory_bytes(worker.proc.pid)
        pool.make_room(64 * GB - held + 1)  # one byte over
        assert pool.running() == ["flax"], "closed although giving back its model was enough"
        assert worker.released and memory_bytes(worker.proc.pid) < held - 32 * 2**20
        pool.make_room(64 * GB)  # released already: now it closes
        assert pool.running() == []
        pool.request("flax", "outputs", out=str(tmp_path / "2.npz"), **ask)
    with np.load(tmp_path / "1.npz") as a, np.load(tmp_path / "2.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_a_process_tree_holds_its_childrens_memory(ballast):
    assert tree_memory_bytes(os.getpid()) >= memory_bytes(os.getpid()) + GB
    assert tree_memory_bytes(ballast.pid) >= GB
    assert tree_memory_bytes(2**22 + 7) == 0


def test_a_budget_over_the_process_tree_counts_processes_beside_the_pool(tmp_path, ballast):
    """Under pytest-xdist the pools of both test processes share one budget over the run's tree:
    the ballast is no worker of the pool, yet it puts the tree over the budget."""
    with WorkerPool(tmp_path, jobs=1, memory_budget=GB) as own:
        own.request("torch", "timings")
        assert memory_bytes(own.worker("torch").proc.pid) < GB / 2 and own.running() == ["torch"]  # it fits
    beside = tree_memory_bytes(os.getpid()) - tree_memory_bytes(ballast.pid)  # this process, no ballast
    with WorkerPool(tmp_path, jobs=1, memory_budget=beside + GB, memory_scope=os.getpid()) as run:
        run.request("torch", "timings")
        assert run.running() == [], "the idle worker stayed although the ballast puts the tree over the budget"


def test_a_scoped_pool_closes_idle_workers_between_its_requests(tmp_path):
    """Under pytest-xdist the other test process grows while this pool has nothing to ask: its
    idle worker still closes (the tree is checked every second), not only around its requests.
    The scope here is a process that grows on cue, so nothing else of the run moves the count."""
    with _grows_on_cue(GB) as (pid, grow), \
            WorkerPool(tmp_path, jobs=1, memory_budget=GB // 2, memory_scope=pid) as run:
        run.request("torch", "timings")
        assert run.running() == ["torch"]  # the scope holds a bare interpreter: well within 0.5 GiB
        grow()
        deadline = time.monotonic() + 10
        while run.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.running() == [], "the idle worker stayed while the scope grew past the budget"


def test_admission_runs_needs_together_only_while_they_fit():
    gate = Admission(budget=4 * GB)
    inside, release = threading.Event(), threading.Event()
    order = []

    def hold(need, name):
        with gate.admit(need):
            order.append(name)
            inside.set()
            release.wait(10)

    first = threading.Thread(target=hold, args=(3 * GB, "3 GB"))
    first.start()
    assert inside.wait(10)
    assert gate.fits(1 * GB) and not gate.fits(2 * GB) and not gate.fits(5 * GB) and not gate.fits(ALONE)
    late = threading.Thread(target=hold, args=(2 * GB, "2 GB"))
    late.start()
    late.join(0.3)
    assert late.is_alive() and order == ["3 GB"], "2 GB beside 3 GB would pass the 4 GB budget"
    release.set()
    first.join(10), late.join(10)
    assert order == ["3 GB", "2 GB"]
    assert gate.fits(5 * GB) and gate.fits(ALONE), "alone, a request runs whatever it needs"
    assert Admission(budget=None).fits(10**15)


def test_a_shared_admission_holds_across_pools_in_asking_order(tmp_path):
    """Two test processes' pools (two admissions on one file here): needs run together only while
    they fit the one budget; a large request waiting is not overtaken by a small one asked later;
    a process that ended holds nothing."""
    path = tmp_path / "admission.json"
    mine, theirs = SharedAdmission(4 * GB, path, poll=0.01), SharedAdmission(4 * GB, path, poll=0.01)
    order, release = [], threading.Event()

    def hold(gate, need, name):
        with gate.admit(need):
            order.append(name)
            release.wait(10)

    threads = [threading.Thread(target=hold, args=args) for args in
               ((mine, 3 * GB, "3 GB"), (theirs, ALONE, "alone"), (theirs, 0, "small"))]
    for asked, t in enumerate(threads, 1):
        t.start()
        deadline = time.monotonic() + 10
        while len(json.loads(path.read_text() if path.exists() else "{}")) < asked and time.monotonic() < deadline:
            time.sleep(0.01)  # asked in this order: each has its entry before the next one asks
    assert order == ["3 GB"], "the large request must wait for the 3 GB, and the small one behind it"
    assert not mine.fits(0) and not theirs.fits(1 * GB)
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["3 GB", "alone", "small"] and mine.fits(ALONE)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"gone": {"pid": int(dead.stdout), "started": 1, "need": ALONE, "ticket": 1,
                                         "running": True}}))
    assert mine.fits(4 * GB), "an entry of a process that ended still counted"


def test_the_run_that_shared_an_admission_removes_its_files(pytestconfig):
    """A pool with ``memory_scope`` keeps its admission in the two files named for that scope;
    the pytest-xdist controller (``conftest.pytest_unconfigure``) removes them at the end."""
    from . import conftest

    files = shared_admission_files(os.getpid())
    with admission(4 * GB, os.getpid()).admit(GB):
        assert all(f.exists() for f in files)
    conftest.pytest_unconfigure(SimpleNamespace(workerinput=None))
    assert not any(f.exists() for f in files), "the run left its admission files behind"


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
    from conformance.launch import describe

    for name, size in (("input-4x299.npy", 299), ("input-2x274-pixels.npy", 274)):  # the FID Inception's pixels
        assert describe("torch", "outputs", {"arch": "inception_v3", "mode": "eval", "input": f"/w/{name}"}) == \
            f"torch outputs inception_v3 eval {size}"
