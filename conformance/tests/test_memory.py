"""How the pool's budget reads memory (``conformance.memory``): a process's share of the
machine's memory, its process tree, the parameter count a need is sized from, and the admission
that runs declared needs together only while they fit."""
import json
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from conformance.memory import (ALONE, Admission, SharedAdmission, admission, eval_memory, memory_bytes,
                                parameter_count, shared_admission_files, tree_memory_bytes)

from .helpers import grows_on_cue

GB = 2**30


def test_memory_bytes_of_a_live_and_a_missing_process():
    assert memory_bytes(os.getpid()) > 10 * 2**20  # this interpreter, numpy and pytest loaded
    assert memory_bytes(2**22 + 7) == 0  # above Linux's pid limit: nothing there


def _vm_rss(pid):  # what the pool read before: the resident size, shared pages in full
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


# 512 MiB written into a private anonymous mapping, then, on a line from stdin, a fork: the two
# processes share it copy-on-write (a mapping that refuses huge pages, which khugepaged could
# collapse, copying them).
SHARED_PAIR = """import mmap, os, sys
m = mmap.mmap(-1, 2**29, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for i in range(0, 2**29, 2**20):
    m[i:i + 2**20] = b"x" * 2**20
print(os.getpid(), flush=True)
sys.stdin.readline()
child = os.fork()
child and print(child, flush=True)
sys.stdin.read()
"""


def test_pages_two_processes_share_count_once():
    """A forked child shares its parent's 512 MiB copy-on-write, as the workers and test
    processes share the frameworks' libraries: each resident size holds all of it, the two
    processes' memory holds it once. The parent is read before the fork too, as a pool's watch
    may (under pytest-xdist it reads the whole run's tree every second): that count is reused
    for 30 s and holds the shared pages in full (the 781 MiB a run once counted); a fresh read
    does not."""
    pair = subprocess.Popen([sys.executable, "-c", SHARED_PAIR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        parent = int(pair.stdout.readline())
        assert memory_bytes(parent) > 2**29  # alone: all of it
        pair.stdin.write("fork\n")
        pair.stdin.flush()
        pids = [parent, int(pair.stdout.readline())]
        assert sum(map(_vm_rss, pids)) > 2 * 2**29
        assert memory_bytes(parent) > 2**29, "read within 30 s: the count before the fork"
        counted = [memory_bytes(p, fresh=True) for p in pids]
        assert 2**29 < sum(counted) < 1.25 * 2**29, (counted, [_vm_rss(p) for p in pids])
    finally:
        pair.stdin.close()
        pair.wait()


# 1 GiB written, then a fork whose child, on SIGUSR1, runs another program (exec): as a worker
# starts, a copy of the large process that started it until the exec. The program writes 256 MiB.
FORK_THEN_EXEC = """import mmap, os, signal, sys
m = mmap.mmap(-1, 2**30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for i in range(0, 2**30, 2**20):
    m[i:i + 2**20] = b"x" * 2**20
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
child = os.fork()
if child == 0:
    signal.sigwait({signal.SIGUSR1})
    os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]])
print(child, flush=True)
sys.stdin.read()
"""
PROGRAM = """import mmap, sys
m = mmap.mmap(-1, 2**28)
for i in range(0, 2**28, 2**20):
    m[i:i + 2**20] = b"y" * 2**20
print("written", flush=True)
sys.stdin.read()
"""


def test_a_process_that_runs_another_program_is_read_afresh():
    """Read before its exec (a pool's watch reads the whole tree every second), a new process
    shares most of its parent's 1 GiB; that shared count, reused after the exec, hid the 256 MiB
    the new program holds (the 160 MiB the shared pair's parent was once counted at)."""
    import signal

    proc = subprocess.Popen([sys.executable, "-c", FORK_THEN_EXEC, PROGRAM], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        assert memory_bytes(child) < 0.75 * 2**30  # the copy: half of the shared GiB is its share
        os.kill(child, signal.SIGUSR1)
        assert proc.stdout.readline().strip() == "written"
        assert memory_bytes(child) > 2**28
    finally:
        proc.stdin.close()
        proc.wait()


def test_growth_after_a_read_shows_at_once():
    """The shared pages are read every 30 s; what a process allocates in between counts at once."""
    with grows_on_cue(2**29) as (pid, grow):
        before = memory_bytes(pid)
        grow()
        assert memory_bytes(pid) >= before + 2**29


def test_parameter_count_is_torchvisions(googlenet_pth, tmp_path):
    """The count the declared needs scale with (from the neutral header alone) is the
    state_dict's, BN statistics included."""
    import torch

    import weights_bridge as wb

    wb.convert(googlenet_pth, tmp_path / "g.neutral", "googlenet")
    state = torch.load(googlenet_pth, weights_only=True)
    assert parameter_count(tmp_path / "g.neutral") == sum(
        v.numel() for k, v in state.items() if not k.endswith("num_batches_tracked"))


MiB = 2**20
# A worker's growth over its size after start-up (VmHWM - VmRSS), serving one model's default
# tasks alone (eval at two sizes and the train-mode forward; Inception v3 with every block
# captured), measured 2026-12-03: (parameters, {process: bytes}).
EVALUATIONS = {
    "googlenet": (13.0e6, {"torch": 311 * MiB, "flax": 310 * MiB, "keras-jax": 327 * MiB,
                           "keras-tensorflow": 204 * MiB, "keras-torch": 457 * MiB}),
    "inception_v3 (layers)": (27.2e6, {"torch": 663 * MiB, "flax": 703 * MiB, "keras-jax": 587 * MiB,
                                       "keras-tensorflow": 388 * MiB, "keras-torch": 1057 * MiB}),
    "inception_resnet_v2": (55.9e6, {"torch": 1033 * MiB, "flax": 1054 * MiB, "keras-jax": 843 * MiB,
                                     "keras-tensorflow": 771 * MiB, "keras-torch": 2137 * MiB}),
}


@pytest.mark.parametrize("model", EVALUATIONS)
def test_an_evaluation_declares_what_was_measured(model):
    """The matrix's declared need per worker covers its measured growth (a need below it lets
    requests run together past the budget), and does not ask twice what it takes: every idle
    worker of both test processes closes for a need that is too large."""
    parameters, grown = EVALUATIONS[model]
    for process, measured in grown.items():
        assert measured <= eval_memory(int(parameters), process) <= 2.5 * measured, (process, measured)


def test_a_process_tree_holds_its_childrens_memory(ballast):
    assert tree_memory_bytes(os.getpid()) >= memory_bytes(os.getpid()) + GB
    assert tree_memory_bytes(ballast) >= GB
    assert tree_memory_bytes(2**22 + 7) == 0


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
