"""The frameworks' own log lines (TensorFlow's, absl's, XLA's, oneDNN's start-up notices) kept out
of every command's output, unless ``--debug``.

Environment variables go first, before any framework loads (``configure`` in the CLI; the
workers get them from ``launch.environment``). They are not enough: TensorFlow 2.16 and later
log through absl from C++ before anything reads ``TF_CPP_MIN_LOG_LEVEL`` ("oneDNN custom
operations are on", "All log messages before absl::InitializeLog() ..."). So the CLI also sends
file descriptor 2, where C++ writes, through a small filter process that drops those lines and
passes everything else; Python's own ``sys.stderr`` (our messages, warnings, tracebacks, the
progress bar) goes to the terminal directly. The filter runs in its own process so that a crash
of ours still gets its last words through. Worker logs keep every line; the tail an error
quotes leaves the noise out (``is_noise``). Numerics are untouched: ``TF_ENABLE_ONEDNN_OPTS``
is left as it is.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

DEBUG = "INCEPTION_BRIDGE_DEBUG"  # "1": keep every log line, in this process and its workers
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2",
               "ABSL_MIN_LOG_LEVEL": "2"}
# Python loggers of the frameworks: warnings and below are their chatter, errors stay.
LOGGERS = ("absl", "tensorflow", "jax._src.xla_bridge", "h5py")
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"  # absl before its init
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./+-]+:\d+\] "  # absl C++ info and warning lines
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] [\w./+-]+:\d+\] "  # TensorFlow's older (TSL) format
    r"|To enable the following instructions: .*rebuild TensorFlow"  # cpu_feature_guard's second line
    r"|.*oneDNN custom operations are on)")
FILTER = """import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; EOF ends this
noise, out = re.compile(sys.argv[1].encode()), sys.stdout.buffer
for line in sys.stdin.buffer:
    if not noise.search(line):
        out.write(line)
        out.flush()
"""


def debug() -> bool:
    return os.environ.get(DEBUG) == "1"


def is_noise(line: str) -> bool:
    return bool(NOISE.search(line))


def last_lines(text: str, lines=15) -> str:
    """The last ``lines`` lines of a process's output, the noise left out (kept with ``--debug``)."""
    kept = [ln for ln in text.strip().splitlines() if debug() or not is_noise(ln)]
    return "\n".join(kept[-lines:])


def log_tail(path, lines=15) -> str:
    """``last_lines`` of a log file ("" if it cannot be read)."""
    try:
        return last_lines(Path(path).read_text(errors="replace"), lines)
    except OSError:
        return ""


def quiet_loggers():
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def configure(keep_logs: bool = False, filter_stderr: bool = True):
    """Called first by the CLI, before any framework loads: with ``keep_logs`` (``--debug``) marks
    this process and its workers to keep every line; otherwise sets the quiet environment,
    the loggers' levels, and (``filter_stderr``: when the CLI is the program, not a call from
    Python code that owns its own stderr) filters file descriptor 2."""
    if keep_logs or debug():
        os.environ[DEBUG] = "1"
        return
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    quiet_loggers()
    if filter_stderr:
        _filter_fd2()


def _filter_fd2():
    try:
        sys.stderr.flush()
        original = os.dup(2)
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", FILTER, NOISE.pattern], stdin=subprocess.PIPE,
                                stdout=original, stderr=subprocess.DEVNULL)
    except (OSError, ValueError):  # no usable fd 2 (a detached process): nothing to filter
        return
    os.dup2(proc.stdin.fileno(), 2)
    proc.stdin.close()  # fd 2 is now the pipe's only write end: the filter ends when this process does
    sys.stderr = os.fdopen(original, "w", buffering=1, errors="backslashreplace")

    def restore():  # the filter drains what C++ wrote last, then exits
        try:
            sys.stderr.flush()
            os.dup2(original, 2)
            proc.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass

    atexit.register(restore)
