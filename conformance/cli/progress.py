"""Progress on stderr for long commands: a live bar on a terminal, a line per step otherwise
(CI logs keep every line, so the bar would only add carriage returns to them).

Two kinds of work report here: counted work (``progress(done, total)``: images of ``fid``) and
steps (``progress.step(step)``: the engine's ``steps.Step``s, each implementation's request in
``verify``, ``bench``, ``diagnose``). Use it as a context manager so that the live line ends.
"""
from __future__ import annotations

import shutil
import sys
import threading
import time


class Progress:
    """``progress(done, total)``: a bar redrawn in place when stderr is a terminal; otherwise a
    line at each tenth of the work (and at the end). ``label`` names what is counted.

    ``progress.step(step)``: a line when a step ends (what, its seconds, the time since the
    start; the error if it failed); on a terminal, below those lines, a live line naming the
    steps running now and how long each has run, redrawn every second."""

    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started, self.reported = time.perf_counter(), -1
        self.running, self.finished = {}, 0  # steps: what -> when it started; how many ended
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._ticker = None

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

    def step(self, step):
        """One ``steps.Step`` (``what``, ``seconds``: None when it starts, ``error``)."""
        with self._lock:
            now = time.perf_counter()
            if step.seconds is None:
                self.running[step.what] = now
                if self.live and self._ticker is None:
                    self._ticker = threading.Thread(target=self._tick, daemon=True)
                    self._ticker.start()
            else:
                self.running.pop(step.what, None)
                self.finished += 1
                result = f"failed after {step.seconds:.1f} s: {step.error}" if step.error else f"{step.seconds:.1f} s"
                self._clear()
                self.stream.write(f"  {self.label} [{now - self.started:4.0f} s] {step.what}: {result}\n")
            self._draw()
            self.stream.flush()

    def _draw(self):
        if not self.live or not self.running:
            return
        now = time.perf_counter()
        running = ", ".join(f"{what} ({now - t0:.0f} s)" for what, t0 in self.running.items())
        line = f"{self.label} [{now - self.started:4.0f} s] {self.finished} done, running: {running}"
        columns = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + (line if len(line) <= columns else line[:columns - 3] + "..."))

    def _clear(self):
        if self.live:
            self.stream.write("\r\033[K")

    def _tick(self):
        while not self._stop.wait(1.0):
            with self._lock:
                if self.running:
                    self._clear()
                    self._draw()
                    self.stream.flush()

    def close(self):
        self._stop.set()
        with self._lock:
            self._clear()
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
