"""The pool the pytest-xdist controller shares with its test processes (shared_pool.py): two
processes' requests reach one worker, errors come back as the pool raises them, a caller
without the run's key is refused and the server goes on serving."""
import json
import os
import subprocess
import sys
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

import pytest

from conformance.launch import REPO, WorkerError, WorkerPool
from weights_bridge import errors

from .shared_pool import PoolClient, PoolServer

GB = 2**30
# A second test process: its own client, the worker's pid from /proc of the pool's torch worker.
OTHER_PROCESS = """
import json, sys
from conformance.tests.shared_pool import PoolClient
a = json.loads(sys.argv[1])
with PoolClient(a["address"], bytes.fromhex(a["key"]), None, None) as pool:
    print(json.dumps(pool.request("torch", "timings")))
"""


@pytest.fixture
def served(tmp_path):
    key = os.urandom(32)
    with WorkerPool(tmp_path, jobs=2) as pool, PoolServer(pool, key) as server:
        yield pool, server, key


def test_two_processes_share_one_worker(served):
    pool, server, key = served
    threads = threading.active_count()  # the server's: one more per open connection
    with PoolClient(server.address, key, None, None) as here:
        assert here.request("torch", "timings")["starts"] == 1
        pid = pool.worker("torch").proc.pid
        other = subprocess.run([sys.executable, "-c", OTHER_PROCESS, json.dumps({"address": server.address,
                                "key": key.hex()})], cwd=REPO, capture_output=True, text=True, check=True)
        assert json.loads(other.stdout)["starts"] == 1
        assert pool.running() == ["torch"] and pool.worker("torch").proc.pid == pid, "the other process got a worker of its own"
        calls = [("torch", "timings", {}, None), ("torch", "timings", {}, {"SECOND": "1"})]
        assert [r["starts"] for r in here.map(calls)] == [1, 1]
        assert sorted(pool.running()) == ["torch", "torch SECOND=1"]
        for _ in range(4):
            here.map(calls)
        deadline = time.monotonic() + 10  # the other process's connection ends as its server thread sees it
        while threading.active_count() > threads + here.jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() <= threads + here.jobs, "maps left connections (and server threads) open"


def test_errors_come_back_as_the_pool_raises_them(served, tmp_path):
    _, server, key = served
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with PoolClient(server.address, key, None, None) as pool:
        with pytest.raises(WorkerError, match="torch worker has no request 'nonsense'"):
            pool.request("torch", "nonsense")
        with pytest.raises(errors.BridgeError, match="junk.pth") as bad_input:
            pool.request("torch", "convert", src=str(junk), dst=str(tmp_path / "out.neutral"), architecture="googlenet")
        assert type(bad_input.value) is not errors.BridgeError  # its own kind, e.g. InputFileError
        assert not (tmp_path / "out.neutral").exists()
        assert pool.map([("torch", "nonsense", {}, None)])[0].args[0].endswith("no request 'nonsense'")


def test_a_caller_without_the_key_is_refused_and_the_server_serves_on(served):
    _, server, key = served
    with pytest.raises(AuthenticationError):
        Client(server.address, family="AF_UNIX", authkey=os.urandom(32))
    with PoolClient(server.address, key, 8 * GB, None) as pool:
        pool.make_room(GB)  # within the budget: nothing to close
        assert pool.request("torch", "timings")["starts"] == 1
