"""The CLI's output holds no TensorFlow, absl, XLA or oneDNN log lines unless ``--debug``, and the
long commands report each implementation's step with its time: a line per step off a terminal,
a live line on one."""
from __future__ import annotations

import io
import re
import sys

import pytest

from conformance.cli.progress import Progress
from conformance.quiet import last_lines
from conformance.quiet import is_noise
from conformance.steps import Step

from .helpers import require, run_cli, seeded

# What TensorFlow 2.20 printed on `convert` to a .weights.h5 before (copied from its output).
TF_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796193342.282259    3646 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. To turn "
    "them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796193342.360819    3646 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 AVX_VNNI FMA, in other "
    "operations, rebuild TensorFlow with the appropriate compiler flags.",
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda drivers "
    "on your machine, GPU will not be used.",
]
NOISE = re.compile(r"oneDNN|absl::|cpu_feature_guard|TF_ENABLE_ONEDNN_OPTS|WARNING: All log messages before|"
                   r"^[IW]\d{4} |rebuild TensorFlow")


def test_framework_lines_are_noise_and_ours_are_not():
    assert all(is_noise(line) for line in TF_LINES)
    ours = ["reading /tmp/g.pth as torch", "  done (11.6 s, peak RSS 1233 MB)",
            "inception-bridge: error: /tmp/x.pth: no such file", "Traceback (most recent call last):",
            "E0000 00:00:1796193342.282259    3646 cuda_dnn.cc:8579] Unable to register cuDNN factory"]  # errors stay
    assert not any(is_noise(line) for line in ours)
    log = "\n".join(["ValueError: bad", *TF_LINES, "worker died"])
    assert last_lines(log, 3) == "ValueError: bad\nworker died"


def test_convert_to_keras_prints_no_framework_lines(tmp_path):
    require("keras", "tensorflow")
    pth = seeded(tmp_path / "g.pth", "googlenet")
    proc = run_cli("convert", pth, tmp_path / "g.weights.h5", "--arch", "googlenet", check=True, fresh=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    assert lines[0] == f"reading {pth} as torch" and lines[2] == f"writing {tmp_path / 'g.weights.h5'} as keras", lines
    assert lines[-1].startswith("  done (") and len(lines) == 4, lines
    assert not [ln for ln in lines if NOISE.search(ln)]
    debug = run_cli("--debug", "convert", pth, tmp_path / "d.weights.h5", "--arch", "googlenet", check=True, fresh=True)
    # --debug keeps whatever the frameworks print (TensorFlow may print nothing): ours are all there
    assert [ln for ln in (debug.stdout + debug.stderr).splitlines() if not NOISE.search(ln)][2] == \
        f"writing {tmp_path / 'd.weights.h5'} as keras"


def test_verify_reports_each_implementations_steps_off_a_terminal(tmp_path):
    """... and, without ``--workdir``, leaves no temporary folder behind."""
    proc = run_cli("verify", "googlenet", "--impls", "torch,torchvision", "--sizes", "96", env={"TMPDIR": str(tmp_path)},
                   check=True, fresh=True)
    assert not list(tmp_path.glob("inception-bridge-*")), list(tmp_path.iterdir())
    steps = [ln for ln in proc.stderr.splitlines() if ln.startswith("  verify [")]
    assert "\r" not in proc.stderr  # no live bar in a log
    for what in ("torch seed googlenet", "torch outputs googlenet eval 96", "torch outputs googlenet train 224",
                 "torchvision outputs googlenet eval 96", "torchvision outputs googlenet train 224"):
        assert any(re.fullmatch(rf"  verify \[ *\d+ s\] {what}: \d+\.\d s", ln) for ln in steps), (what, steps)
    assert not [ln for ln in (proc.stdout + proc.stderr).splitlines() if NOISE.search(ln)]


def test_in_process_runs_refuse_keras(tmp_path, googlenet_pth):
    """The tests' in-process CLI runner (``helpers.run_cli``) stops a command before Keras or
    TensorFlow loads into the test process, and says how to run it instead."""
    with pytest.raises(RuntimeError, match="fresh=True"):
        run_cli("convert", googlenet_pth, tmp_path / "g.weights.h5", "--arch", "googlenet", "--quiet")
    assert "keras" not in sys.modules and "tensorflow" not in sys.modules
    assert not (tmp_path / "g.weights.h5").exists()


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_line_names_the_running_steps_and_ends_cleanly(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the live line is cut to the terminal's width (pytest-xdist's: 80)
    out = Terminal()
    with Progress("verify", stream=out) as progress:
        progress.step(Step("flax outputs googlenet eval 224"))
        progress.step(Step("torch outputs googlenet eval 224"))
        progress.step(Step("torch outputs googlenet eval 224", 1.5))
        progress.step(Step("flax outputs googlenet eval 224", 2.0, "worker died"))
    text = out.getvalue()
    assert "\rverify [   0 s] 0 done, running: flax outputs googlenet eval 224 (0 s), torch outputs" in text
    assert "  verify [   0 s] torch outputs googlenet eval 224: 1.5 s\n" in text
    assert "  verify [   0 s] flax outputs googlenet eval 224: failed after 2.0 s: worker died\n" in text
    assert text.endswith("\r\033[K")  # the live line is gone when the command prints its result
