"""A pool's memory budget: how much its workers may hold together, read from their shares of
the machine's memory (``memory_bytes``), and the admission of requests that say how large they
make a worker.

Most requests leave a worker near its start-up size; a few (a float64 training step of a
large model) grow one to several GB. Closing idle workers after such a request is too late to
keep the peak down: two of them running at once, beside idle workers, is the peak. So a request
may declare its ``need`` (bytes): requests run together only while their needs fit the budget
(one runs alone whatever it needs), and before one starts, idle workers are closed until the
others' sizes plus its need fit.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from weights_bridge import neutral


# A need no budget holds: the request runs by itself, every idle worker closed first.
ALONE = 2**62


# What a worker grows by while evaluating a model (loading it, its outputs at two sizes, the
# train-mode forward, each block's output where asked), in multiples of the model's float32
# parameter bytes, by worker process. Largest measured, alone: GoogLeNet (13.0M, activations
# weigh most) 6.6x on keras-jax; Inception v3 with every block captured 6.8x on flax;
# Inception-ResNet-v2 (55.9M) 4.9x on flax; Keras on torch 10.2x (v3), +2.1 GiB on
# Inception-ResNet-v2, 3 GiB of idle workers beside it, before a matrix declared its need.
EVAL_MEMORY_FACTOR = {"keras-torch": 12}
EVAL_MEMORY_FACTOR_DEFAULT = 8


def parameter_count(neutral_path) -> int:
    """Elements of every tensor a neutral checkpoint holds, BN statistics included (what the
    memory factors were measured against), from its header alone."""
    return sum(math.prod(shape) for shape in neutral.tensor_shapes(neutral_path).values())


def eval_memory(parameters: int, process: str) -> int:
    """Bytes the worker ``process`` may grow by evaluating a model with ``parameters`` in float32."""
    return EVAL_MEMORY_FACTOR.get(process, EVAL_MEMORY_FACTOR_DEFAULT) * 4 * parameters


# How long a process's shared-page count is trusted before it is read again.
SHARED_REFRESH_SECONDS = 30.0
_shared = {}  # (pid, start time, command line) -> (when read, VmRSS - Pss then)


def memory_bytes(pid: int, fresh: bool = False) -> int:
    """A process's share of the machine's memory, 0 if it is not there to read: its resident
    size (``VmRSS``) less what that counts of pages other processes map too. Resident sizes
    count such a page in full in each process: the frameworks' libraries (libtorch, TensorFlow's,
    XLA's), mapped by both test processes and most workers, made a run's summed resident size
    a quarter above what it used. The proportional set size (``Pss``) counts a shared page's
    share; reading it walks every mapping (15-25 ms for a framework's process, against well
    under 1 ms for ``VmRSS``), so the difference is read every ``SHARED_REFRESH_SECONDS`` per
    process (libraries are mapped at start-up), and growth shows in ``VmRSS`` at once. Pages
    that become shared in between (a fork) count in full until then; ``fresh`` reads them now.
    A process that runs another program (exec) is read afresh: between fork and exec a new
    worker is a copy of the large process that started it, sharing most of it."""
    rss = _field(f"/proc/{pid}/status", "VmRSS:")
    if rss is None:
        return 0
    key, now = (pid, _start_time(pid), _command_line(pid)), time.monotonic()
    read_at, overcount = _shared.get(key, (-math.inf, 0))
    if fresh or now - read_at > SHARED_REFRESH_SECONDS:
        pss = _field(f"/proc/{pid}/smaps_rollup", "Pss:")  # Linux 4.14+
        overcount = max(rss - pss, 0) if pss is not None else 0
        if len(_shared) > 256:  # a long run measures thousands of short processes
            for old in [k for k, (at, _) in list(_shared.items()) if now - at > 10 * SHARED_REFRESH_SECONDS]:
                _shared.pop(old, None)
        _shared[key] = (now, overcount)
    return max(rss - overcount, 0)


def _field(path, name):
    """The size in bytes on the line of a ``/proc`` file that starts with ``name``; None if unread."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def tree_memory_bytes(root: int) -> int:
    """``memory_bytes`` of ``root`` and all its descendants (Linux ``/proc``): a whole run's
    processes, whichever of them started which."""
    children = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        parent = _stat_field(int(entry), _PARENT) if entry.isdigit() else None
        if parent is not None:  # else it ended while we looked
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += memory_bytes(pid)
        todo.extend(children.get(pid, ()))
    return total


class Admission:
    """Requests in flight and their declared needs; ``budget`` None admits everything at once."""

    def __init__(self, budget: int | None):
        self.budget = budget
        self._needs, self._count = 0, 0
        self._changed = threading.Condition()

    def fits(self, need: int) -> bool:
        return self.budget is None or self._count == 0 or self._needs + need <= self.budget

    @contextmanager
    def admit(self, need: int = 0):
        """Waits until ``need`` fits beside the requests in flight, then holds it until the block ends."""
        with self._changed:
            self._changed.wait_for(lambda: self.fits(need))
            self._needs += need
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._needs -= need
                self._count -= 1
                self._changed.notify_all()


_TICKETS = itertools.count()  # one per admit in this process: entries of two admissions never clash


def admission(budget: int | None, scope: int | None = None) -> Admission:
    """A pool's admission: its own, or with ``scope`` (a pid) the one every pool of the run under
    that process shares (its file is named by the pid and its start, so no later run reuses it)."""
    if scope is None:
        return Admission(budget)
    return SharedAdmission(budget, shared_admission_files(scope)[0])


def shared_admission_files(scope: int) -> tuple:
    """(the entries, their lock) of the admission shared under ``scope``: the run's to remove
    once every process that used them has ended."""
    path = Path(tempfile.gettempdir()) / f"inception-bridge-admission-{scope}-{_start_time(scope)}.json"
    return path, path.with_name(f"{path.name}.lock")


class SharedAdmission(Admission):
    """``Admission`` across processes: the pools of one run (pytest-xdist's test processes) keep
    their requests in one file, changed under an exclusive lock. Requests are admitted in the
    order they asked (a large one waiting is not overtaken by small ones, so it is not starved),
    and the entries of processes that ended are dropped."""

    def __init__(self, budget: int | None, path, poll: float = 0.2):
        super().__init__(budget)
        self.path, self.poll = Path(path), poll

    def fits(self, need: int) -> bool:
        return self._change(lambda held: self._admits(held, need, math.inf))

    @contextmanager
    def admit(self, need: int = 0):
        me = f"{os.getpid()}:{threading.get_ident()}:{next(_TICKETS)}"
        try:  # waiting too: an entry left behind would hold up every later request of the run
            while not self._change(lambda held: self._take(held, me, need)):
                time.sleep(self.poll)
            yield
        finally:
            self._change(lambda held: held.pop(me, None))

    def _admits(self, held: dict, need: int, ticket) -> bool:
        running = [e for e in held.values() if e["running"]]
        earlier = any(not e["running"] and e["ticket"] < ticket for e in held.values())
        fits = self.budget is None or not running or sum(e["need"] for e in running) + need <= self.budget
        return fits and not earlier

    def _take(self, held: dict, me: str, need: int) -> bool:
        if me not in held:
            ticket = max((e["ticket"] for e in held.values()), default=0) + 1
            held[me] = {"pid": os.getpid(), "started": _start_time(os.getpid()), "need": need, "ticket": ticket,
                        "running": False}
        held[me]["running"] = self._admits(held, need, held[me]["ticket"])
        return held[me]["running"]

    def _change(self, change):
        """``change(held)`` on the file's entries of live processes, written back whole (a new
        file renamed over it: a process killed mid-write leaves the old one); its result."""
        with open(self.path.with_name(f"{self.path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                held = json.loads(self.path.read_text())
            except (OSError, ValueError):  # none yet
                held = {}
            held = {k: e for k, e in held.items() if _start_time(e["pid"]) == e["started"]}  # not a reused pid
            result = change(held)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(held))
            os.replace(tmp, self.path)
        return result


def _command_line(pid: int):
    """``pid``'s command line as bytes (exec changes it, keeping the pid); None if unread."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return None


def _start_time(pid: int):
    """When ``pid`` started (clock ticks since boot); None if it is not running."""
    return _stat_field(pid, _START_TIME)


# Fields of /proc/PID/stat, counted after the command's closing parenthesis (it may hold spaces).
_PARENT, _START_TIME = 1, 19


def _stat_field(pid: int, field: int):
    """One integer field of ``pid``'s Linux ``/proc/PID/stat``; None if it is not there to read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[field])
    except (OSError, ValueError, IndexError):
        return None
