"""``python -m conformance.workers PROCESS``: serves requests for one framework until stdin closes.

Each request is a JSON line {"op", "args"}; each reply a JSON line {"ok", "result"} or {"ok":
false, "error", "kind"} (``kind`` names a ``weights_bridge.errors`` class when the request failed
on bad input, so the caller raises the same error). The replies go to the original stdout; the
process's own stdout is pointed at stderr, its log, so nothing a library prints corrupts them.
``KERAS_BACKEND`` is in the environment before anything imports keras (``conformance.launch``).
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback


def adapter(process: str, started: float):
    if process == "torch":
        from conformance.frameworks.torch_nn import TorchAdapter

        return TorchAdapter(process, started)
    if process == "flax":
        from conformance.frameworks.flax_nnx import FlaxAdapter

        return FlaxAdapter(process, started)
    if process.startswith("keras-"):
        from conformance.frameworks.keras3 import KerasAdapter

        return KerasAdapter(process, started)
    raise ValueError(f"unknown worker process {process!r}")


def serve(process: str, started: float):
    from conformance import quiet

    if not quiet.debug():  # the environment is quiet already (conformance.launch); so are the loggers
        quiet.quiet_loggers()
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    served = adapter(process, started)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply = {"ok": True, "result": served.handle(request["op"], request["args"])}
        except Exception as e:  # reported to the caller, which decides; the worker serves on
            from weights_bridge.errors import BridgeError

            traceback.print_exc()
            text = str(e) if isinstance(e, BridgeError) else "".join(traceback.format_exc()).strip()[-3000:]
            reply = {"ok": False, "error": text, "kind": type(e).__name__ if isinstance(e, BridgeError) else None}
        replies.write(json.dumps(reply, default=str) + "\n")


if __name__ == "__main__":  # the guard matters: torch.multiprocessing's spawned children import this module
    serve(sys.argv[1], float(os.environ.get("CONFORMANCE_WORKER_STARTED") or time.time()))
