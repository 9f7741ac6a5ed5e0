"""What a ``progress`` callback hears: a ``Step`` as a request (a worker's, a switch ``diagnose``
tries) starts and ends; the CLI prints them (``conformance.cli.progress``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One request as a pool's ``progress`` callback hears of it: when it starts (``seconds``
    None) and when it ends (its seconds, and the error's last line if it failed)."""

    what: str
    seconds: float | None = None
    error: str | None = None
