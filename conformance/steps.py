"""What a ``progress`` callback hears: a ``Step`` as a request (a worker's, a switch ``diagnose``
tries) starts and ends, and the words that name a worker's request in it; the CLI prints them
(``conformance.cli.progress``)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    """One request as a pool's ``progress`` callback hears of it: when it starts (``seconds``
    None) and when it ends (its seconds, and the error's last line if it failed)."""

    what: str
    seconds: float | None = None
    error: str | None = None


def describe(process, op, args) -> str:
    """A request in a few words: 'timm outputs inception_v3 eval 299', 'keras-applications
    (keras-jax) bench inception_v3 299'."""
    batch_size = re.match(r"input-\d+x(\d+)", Path(args.get("input") or "").stem)  # agreement.tasks' names
    size = args.get("size") or (batch_size.group(1) if batch_size else "")
    impl = args.get("impl") or process
    if process.startswith("keras-") and impl != process:  # a peer that runs on several backends
        impl = f"{impl} ({process})"
    words = [impl, op, args.get("arch"), args.get("mode") or args.get("dtype"), size,
             f"to {args['fmt']}" if args.get("fmt") else "",
             f"({', '.join(args['configs'])})" if args.get("configs") else ""]
    return " ".join(str(w) for w in words if w)
