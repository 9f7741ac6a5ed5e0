"""The one way the engine starts a process: a long-lived worker per framework that serves every
request of a run (``WorkerPool``), or one module run once (``run_module``).

Each framework runs in its own process (``conformance.registry``), started once; it keeps its
imports, compiled functions and loaded model between requests (most of what a request costs on a
small machine). A request is one JSON line on the worker's stdin, its reply one JSON line back;
arrays travel as ``.npz``/``.npy`` files. What a worker prints goes to its log, which errors quote.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from weights_bridge import errors

from . import quiet
from .memory import admission, memory_bytes, tree_memory_bytes
from .steps import Step, describe

REPO = Path(__file__).resolve().parent.parent  # holds impls, weights_bridge and conformance
KERAS_BACKENDS = {"keras-tensorflow": "tensorflow", "keras-jax": "jax", "keras-torch": "torch"}


class WorkerError(RuntimeError):
    """A worker failed a request or died; the message ends with its log's last lines."""


def jax_cache_dir() -> str:
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "inception-bridge", "jax")


def environment(process: str = "", extra=None) -> dict:
    """The environment of a worker: ``KERAS_BACKEND`` fixed for its process (Keras reads it once,
    at import), quiet framework logs (unless ``--debug``: ``conformance.quiet``), a persistent JAX
    compilation cache (JAX compiles every op and initializer once per shape: minutes per worker on
    two cores, paid once per machine), JAX's GPU memory taken as needed (workers share the GPU)."""
    env = {**({} if quiet.debug() else quiet.ENVIRONMENT), "XLA_PYTHON_CLIENT_PREALLOCATE": "false", **os.environ,
           "JAX_COMPILATION_CACHE_DIR": jax_cache_dir(), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if process in KERAS_BACKENDS:
        env["KERAS_BACKEND"] = KERAS_BACKENDS[process]
    return {**env, **(extra or {})}


def run_module(module: str, *args, process: str = "", env=None, what: str = "") -> subprocess.CompletedProcess:
    """``python -m module args`` once, in ``process``'s environment; raises ``WorkerError`` with
    the output's tail if it fails."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO,
                          env=environment(process, env), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = quiet.last_lines(proc.stdout + proc.stderr)
        raise WorkerError(f"{what or module} failed (exit {proc.returncode}):\n{tail}")
    return proc


class Worker:
    """One long-lived ``python -m conformance.workers PROCESS`` and its request/reply pipe."""

    def __init__(self, process: str, log: Path, env=None):
        self.process, self.log = process, Path(log)
        self._log_file = open(self.log, "ab")
        started = {"CONFORMANCE_WORKER_STARTED": str(time.time())}  # its start-up (imports) is timed from here
        self.proc = subprocess.Popen([sys.executable, "-m", "conformance.workers", process], cwd=REPO,
                                     env=environment(process, {**(env or {}), **started}), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log_file, text=True, bufsize=1)
        self.lock = threading.Lock()
        self.seconds = 0.0  # time spent serving requests
        self.retired = False  # closed by its pool's memory budget
        self.released = True  # holds nothing a request left (models, compiled functions)
        self.startup, self.baseline = 0.0, None  # its imports' seconds and its size after them (``probe``)

    def probe(self):
        """Waits for its imports, then notes their seconds and its size (lock held): what closing it
        costs (``WorkerPool.make_room``) and what its requests' needs count from (``grown``)."""
        self.startup = self.request_unlocked("timings")["startup"]
        self.baseline = memory_bytes(self.proc.pid, fresh=True)  # a watch may have read it mid-start-up

    def grown(self) -> int:
        """Bytes it holds beyond its size after start-up: what its requests left (a loaded model)."""
        return 0 if self.baseline is None else max(0, memory_bytes(self.proc.pid) - self.baseline)

    def request(self, op: str, **args):  # one request; its reply's result
        with self.lock:
            return self.request_unlocked(op, **args)

    def request_unlocked(self, op: str, **args):
        """``request`` for a caller that holds ``lock``."""
        if self.proc.poll() is not None:
            raise WorkerError(f"worker {self.process} is not running (exit {self.proc.returncode}):\n"
                              f"{quiet.log_tail(self.log)}")
        t0 = time.perf_counter()
        if op != "timings":
            self.released = op == "release"
        try:
            self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        self.seconds += time.perf_counter() - t0
        if not line:
            code = self.proc.wait()
            raise WorkerError(f"worker {self.process} died during {op} (exit {code}):\n{quiet.log_tail(self.log)}")
        reply = json.loads(line)
        if not reply["ok"]:
            kind = errors.by_name(reply.get("kind"))
            if kind:
                raise kind(reply["error"])  # bad input, reported as the bridge reports it
            raise WorkerError(f"worker {self.process}: {op} failed:\n{reply['error']}")
        return reply["result"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def _add_timings(into: dict, name: str, t: dict):  # a worker closed and started again adds up
    kept = into.setdefault(name, dict.fromkeys(t, 0.0))
    for k in kept:
        kept[k] += t[k]


class WorkerPool(contextlib.AbstractContextManager):  # ``with``: closed at the end
    """Workers by (process, environment), started on first use and kept until ``close``; ``jobs``
    serve at once (``map``). ``memory_budget`` (bytes, all workers together, as ``memory_bytes``
    counts them): requests run together only while their declared ``need``s fit, and before and
    after each one idle workers make room (``make_room``); a closed worker starts again when next
    asked (its JAX compilations are in the persistent cache). With ``memory_scope`` (a pid) the
    budget counts that process's whole tree, every second too, and its pools (parallel test
    processes) admit needs once for all (``memory.SharedAdmission``). ``progress`` hears each
    request's ``Step``s. Side-by-side workers (``jobs`` > 1) wait passively (``OMP_WAIT_POLICY``,
    unless set): spinning OpenMP threads take the cores the others need."""

    def __init__(self, log_dir=None, jobs: int = 2, memory_budget: int = None, progress=None, memory_scope=None):
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="inception-bridge-workers-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.jobs, self.memory_budget, self.memory_scope, self.progress = jobs, memory_budget, memory_scope, progress
        self.shared_env = {"OMP_WAIT_POLICY": "PASSIVE"} if jobs > 1 and "OMP_WAIT_POLICY" not in os.environ else {}
        self.admission = admission(memory_budget, memory_scope)
        self._workers = {}
        self._lock = threading.Lock()
        self._closed_timings = {}  # timings of workers the budget closed, added up by worker
        self._closing, self._watching = threading.Event(), threading.Lock()  # held: no watch closes one
        if memory_budget and memory_scope:  # the scope's other processes grow without asking this pool
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while not self._closing.wait(1.0):
            with self._watching, contextlib.suppress(Exception):  # a worker that ends as it is looked at
                self.make_room()  # is seen gone next time; the watch goes on

    def worker(self, process: str, env=None) -> Worker:
        key = (process, tuple(sorted((env or {}).items())))
        with self._lock:
            w = self._workers.get(key)
            if w is None or w.proc.poll() is not None:
                suffix = "".join(f"-{v}" for _, v in key[1])[:40].replace("/", "_").replace(" ", "")
                w = self._workers[key] = Worker(process, self.log_dir / f"{process}{suffix}.log",
                                                {**self.shared_env, **(env or {})})
            return w

    def request(self, process: str, op: str, env=None, need: int = 0, **args):
        """One request; ``need``: the bytes its worker may grow by serving it (0: it barely grows)."""
        what, t0 = describe(process, op, args), time.perf_counter()
        self._report(Step(what))
        try:
            with self.admission.admit(need):
                while True:
                    w = self.worker(process, env)
                    with w.lock:
                        if not w.retired:  # else the budget closed it before this request got it
                            if self.memory_budget and w.baseline is None:
                                w.probe()
                            if self.memory_budget and need:  # what it holds already counts toward it
                                self.make_room(max(0, need - w.grown()))  # w's lock is held: it stays
                            try:
                                result = w.request_unlocked(op, **args)
                            finally:  # one that ran alone is the size of its request: gone before others start
                                if self.memory_budget and need >= self.memory_budget and w.proc.poll() is None:
                                    with self._lock:
                                        self._retire(w)
                            self._report(Step(what, time.perf_counter() - t0))
                            return result
        except Exception as e:
            self._report(Step(what, time.perf_counter() - t0, (str(e).strip().splitlines() or ["?"])[-1]))
            raise
        finally:
            if self.memory_budget:
                self.make_room()

    def _report(self, step: Step):
        if self.progress:
            self.progress(step)

    def make_room(self, need: int = 0):
        """Until the running workers and ``need`` fit the budget: idle workers give back what
        their requests left (models, compiled functions; a ``release`` takes well under a second),
        largest first, then idle workers are closed, those whose start-up costs least per byte
        first (torch's ~2 s or Flax's ~1 s before Keras-on-TensorFlow's ~6 s, all sizes equal).
        A caller about to start a large process of its own passes that process's size."""
        with self._lock:
            total = need + self.held()
            for close in (False, True):
                alive = [(w, memory_bytes(w.proc.pid)) for w in self._workers.values() if w.proc.poll() is None]
                for w, r in sorted(alive, key=lambda wr: wr[0].startup / max(wr[1], 1) if close else -wr[1]):
                    if total <= self.memory_budget:
                        return
                    if (close or not w.released) and w.lock.acquire(blocking=False):  # idle: nobody waits on it
                        try:
                            if close:
                                self._retire(w)
                            else:
                                with contextlib.suppress(WorkerError):  # one that died is closed later
                                    w.request_unlocked("release")
                        finally:
                            w.lock.release()
                        total -= r - (0 if close else memory_bytes(w.proc.pid))

    def held(self) -> int:
        """Bytes the budget counts: the scope's whole process tree, else the pool's workers."""
        if self.memory_scope:
            return tree_memory_bytes(self.memory_scope)
        return sum(memory_bytes(w.proc.pid) for w in list(self._workers.values()))

    def _retire(self, w):
        """Closes ``w`` (pool lock and ``w.lock`` held), keeping its timings for ``timings``."""
        key = next(k for k, v in self._workers.items() if v is w)
        with contextlib.suppress(WorkerError):  # one that died has no timings to give
            _add_timings(self._closed_timings, self._name(key), w.request_unlocked("timings"))
        w.close()
        w.retired = True
        del self._workers[key]

    @staticmethod
    def _name(key):  # (process, environment)
        return f"{key[0]}{''.join(f' {k}={v}' for k, v in key[1])}"

    def map(self, calls, need=0):  # ``map_requests``, ``jobs`` at once
        return map_requests(self.request, calls, need, self.jobs)

    def timings(self) -> dict:
        """{worker: {"starts", "startup", "load", "requests" (seconds)}} of every worker of the
        pool, those the memory budget closed (and started again) added up."""
        with self._watching:
            out = {name: dict(t) for name, t in self._closed_timings.items()}
            for key, w in list(self._workers.items()):
                if w.proc.poll() is None:
                    _add_timings(out, self._name(key), w.request("timings"))
        return out

    def running(self) -> list:  # the names of the pool's workers that are running now
        return [self._name(key) for key, w in list(self._workers.items()) if w.proc.poll() is None]

    def close(self):
        self._closing.set()
        with self._lock:  # not while the budget's watch closes one
            for w in self._workers.values():
                w.close()
            self._workers.clear()

    def __exit__(self, *exc):
        self.close()


def map_requests(request, calls, need=0, jobs: int = 2):
    """Runs [(process, op, args, env)] through ``request`` (a pool's), up to ``jobs`` processes at once
    (fewer where their ``need``s, one for all or one per call, do not fit the memory budget), each
    process's requests in order; returns each call's result, or the exception it raised."""
    needs = need if isinstance(need, (list, tuple)) else [need] * len(calls)
    by_process, results = {}, [None] * len(calls)
    for i, (process, op, args, env) in enumerate(calls):
        by_process.setdefault((process, tuple(sorted((env or {}).items()))), []).append(i)

    def serve(indices):
        for i in indices:
            process, op, args, env = calls[i]
            try:
                results[i] = request(process, op, env, needs[i], **args)
            except (WorkerError, errors.BridgeError) as e:
                results[i] = e

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(serve, by_process.values()))
    return results
