"""Progress on stderr for long commands: a live bar on a terminal, a line per step otherwise
(CI logs keep every line, so the bar would only add carriage returns to them)."""
from __future__ import annotations

import sys
import time


class Progress:
    """``progress(done, total)``: a bar redrawn in place when stderr is a terminal; otherwise a
    line at each tenth of the work (and at the end). ``label`` names what is counted."""

    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started, self.reported = time.perf_counter(), -1

    def __call__(self, done: int, total: int):
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: {done}/{total} ({rate:.1f}/s, {elapsed:.0f} s)"
        if self.live:
            filled = int(self.width * done / max(total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {text}")
            if done >= total:
                self.stream.write("\n")
        else:
            tenth = 10 * done // max(total, 1)
            if tenth == self.reported and done < total:
                return
            self.reported = tenth
            self.stream.write(text + "\n")
        self.stream.flush()
