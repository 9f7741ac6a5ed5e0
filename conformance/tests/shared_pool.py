"""One worker pool for both pytest-xdist test processes, owned by their controller.

With a pool per test process a run kept two sets of framework workers where one would do, in a
memory budget that also holds both test processes: each large request closed the other process's
idle workers, which then started again (189 starts in a whole run, a quarter of the workers'
time, ~7 s for Keras on TensorFlow). Here the controller holds the one ``WorkerPool`` (budget,
admission and memory watch as before) and serves it over a Unix socket: ``PoolServer`` answers
``PoolClient``s, one connection per call in flight, one JSON message per call and reply (never a
pickle; the socket's key is the run's own). Two test processes asking one worker take turns.
"""
from __future__ import annotations

import contextlib
import json
import threading
from multiprocessing.connection import Client, Listener

from conformance.launch import WorkerError, map_requests
from conformance.memory import admission
from weights_bridge import errors


class PoolServer(contextlib.AbstractContextManager):
    """Serves ``pool``'s ``request`` and ``make_room`` to ``PoolClient``s until closed."""

    def __init__(self, pool, authkey: bytes):
        self.pool = pool
        self.listener = Listener(family="AF_UNIX", authkey=authkey)
        self.address = self.listener.address
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn = self.listener.accept()
            except OSError:  # closed
                return
            except Exception:  # a caller without the key: refused, the next one heard
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                try:
                    call = json.loads(conn.recv_bytes())
                except (EOFError, OSError):  # the client closed it
                    return
                try:
                    reply = {"ok": True, "result": self._call(**call)}
                except Exception as e:
                    reply = {"ok": False, "kind": type(e).__name__, "error": str(e)}
                try:
                    conn.send_bytes(json.dumps(reply).encode())
                except OSError:  # the client ended while its request ran
                    return

    def _call(self, call, process=None, op=None, env=None, need=0, args=None):
        if call == "request":
            return self.pool.request(process, op, env, need, **args)
        if call == "make_room":
            return self.pool.make_room(need)
        raise ValueError(f"the shared pool has no call {call!r}")

    def close(self):
        self.listener.close()

    def __exit__(self, *exc):
        self.close()


class PoolClient(contextlib.AbstractContextManager):
    """What a test sees of a pool (``request``, ``map``, ``make_room``, ``admission``,
    ``memory_budget``), served by the ``PoolServer`` at ``address``. Its ``admission`` is the
    server pool's own (``memory_scope``: the files of the controller's run), so a test's own large
    process (``helpers.own_process``) is admitted beside every pool request of the run."""

    def __init__(self, address: str, authkey: bytes, memory_budget: int, memory_scope: int, jobs: int = 2):
        self.address, self.authkey, self.jobs = address, authkey, jobs
        self.memory_budget = memory_budget
        self.admission = admission(memory_budget, memory_scope)
        self._idle, self._lock = [], threading.Lock()  # connections no call is using

    def _send(self, **call):
        with self._lock:  # one connection per call in flight: ``map``'s threads wait on their own
            conn = self._idle.pop() if self._idle else None
        conn = conn or Client(self.address, family="AF_UNIX", authkey=self.authkey)
        try:
            conn.send_bytes(json.dumps(call).encode())
            reply = json.loads(conn.recv_bytes())
        except BaseException:  # half a conversation: not reused
            conn.close()
            raise
        with self._lock:
            self._idle.append(conn)
        if reply["ok"]:
            return reply["result"]
        kind = errors.by_name(reply["kind"])
        if kind:
            raise kind(reply["error"])  # bad input, as the bridge reports it
        raise WorkerError(reply["error"] if reply["kind"] == "WorkerError" else f"{reply['kind']}: {reply['error']}")

    def request(self, process: str, op: str, env=None, need: int = 0, **args):
        return self._send(call="request", process=process, op=op, env=env, need=need, args=args)

    def map(self, calls, need=0):
        return map_requests(self.request, calls, need, self.jobs)

    def make_room(self, need: int = 0):
        self._send(call="make_room", need=need)

    def close(self):
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()

    def __exit__(self, *exc):
        self.close()
