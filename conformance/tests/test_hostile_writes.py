"""Fuzzed safetensors headers and config files, and faults while writing (kill -9, a full disk,
a failing rename): the destination holds the old file or a complete new one, never half.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weights_bridge as wb
from conformance.launch import REPO, environment
from weights_bridge import neutral

from .hostile import ARCH, Material, listing, write


# ----------------------------------------------------------------------------- fuzzing

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_small_ints = st.integers(min_value=-2, max_value=2 ** 64 + 1)
_entries = st.fixed_dictionaries({}, optional={
    "dtype": st.sampled_from(["F32", "F64", "BF16", "I8", "U8", "F16", "BOOL", "X", ""]) | st.integers(),
    "shape": st.lists(st.integers(-1, 6) | st.just(2 ** 40), max_size=4) | st.text(max_size=3),
    "data_offsets": st.lists(st.integers(-4, 200) | st.just(2 ** 63), max_size=3) | st.none(),
})


@st.composite
def _safetensors_bytes(draw):
    kind = draw(st.sampled_from(["random", "structured", "mutated"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    header = draw(st.dictionaries(st.sampled_from(["fc.bias", "fc.weight", "__metadata__", "x", ""]),
                                  _entries | st.integers() | st.text(max_size=5) | st.none(), max_size=4))
    text = json.dumps(header).encode()
    n = draw(st.sampled_from([len(text), len(text) + 1, max(len(text) - 1, 0), 2 ** 64 - 1, 0]))
    data = draw(st.binary(max_size=200))
    raw = bytearray(struct.pack("<Q", n) + text + data)
    if kind == "mutated" and raw:
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 255))
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


@pytest.fixture(scope="module")
def fuzz_dir(material, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz") / "ckpt"
    d.mkdir()
    (d / neutral.CONFIG).write_text(json.dumps(material.config))
    (d / neutral.TENSORS).write_bytes(b"")
    return d


def test_fuzz_safetensors_reader(fuzz_dir):
    @FUZZ
    @given(_safetensors_bytes())
    def check(raw):
        (fuzz_dir / neutral.TENSORS).write_bytes(raw)
        try:
            neutral.read(fuzz_dir)
        except wb.BridgeError as e:
            assert str(fuzz_dir) in str(e)

    check()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                     max_leaves=8)
_config_values = {"format_version": st.sampled_from([1, 0, 2, True, "1", None]) | _json,
                  "architecture": st.sampled_from(["googlenet", "googlenet_paper", "inception_v3", "", "x"]) | _json,
                  "num_classes": st.sampled_from([1, 2, 1000, 0, -1, 10 ** 30, 1.5, True]) | _json,
                  "aux_logits": st.booleans() | _json,
                  "transform_input": st.booleans() | _json,
                  "variant": st.text(max_size=5) | _json}


@st.composite
def _config_text(draw):
    kind = draw(st.sampled_from(["random", "json", "config"]))
    if kind == "random":
        return draw(st.text(max_size=200))
    if kind == "json":
        return json.dumps(draw(_json))
    keys = draw(st.sets(st.sampled_from(list(_config_values)), min_size=3))
    cfg = {k: draw(_config_values[k]) for k in keys}
    return json.dumps(cfg, allow_nan=True)


def test_fuzz_config_reader(material, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzcfg") / "ckpt"
    d.mkdir()
    (d / neutral.TENSORS).write_bytes(material.safetensors({}, b""))  # valid, but holds no tensor

    @FUZZ
    @given(_config_text())
    def check(text):
        (d / neutral.CONFIG).write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            neutral.read(d)
        except wb.BridgeError as e:
            assert str(d) in str(e)
        else:
            raise AssertionError("a checkpoint without tensors was accepted")

    check()


# ----------------------------------------------------------------------------- faults while writing

def _same_weights(path, m: Material):
    got = wb.read(path, architecture=ARCH).tensors
    return got.keys() == m.tensors.keys() and all(np.array_equal(got[k], m.tensors[k]) for k in got)


def _temporary_exists(folder: Path) -> bool:
    return any(n.endswith(".tmp") for n in os.listdir(folder))


def _convert_cli(src, dst, env):
    return subprocess.Popen([sys.executable, "-m", "conformance.cli", "convert", str(src), str(dst),
                             "--overwrite", "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_temporary(proc, folder: Path, timeout=60.0) -> bool:
    """Busy-polls (a temporary may live only milliseconds on a fast disk) until one appears."""
    import time

    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < timeout:
        if _temporary_exists(folder):
            return True
    return False


def test_kill_9_while_writing_leaves_old_or_nothing(material, tmp_path):
    """SIGKILL the CLI at random points of a conversion over an existing output (--overwrite):
    the destination is always absent or a complete, valid checkpoint, never a partial one.

    Kill points are drawn inside the temporary's measured lifetime on this machine, and the child
    is frozen (SIGSTOP) before we look, so "killed while writing" is counted exactly, not raced."""
    import random
    import signal
    import time

    rng = random.Random(0)
    env = environment()
    lifetime = {}
    for name in ("out.pth", "out.neutral"):  # one undisturbed run each: how long the write takes here
        proc = _convert_cli(material.neutral, tmp_path / name, env)
        seen = _wait_for_temporary(proc, tmp_path)
        t0 = time.monotonic()
        while seen and proc.poll() is None and _temporary_exists(tmp_path):
            pass
        lifetime[name] = time.monotonic() - t0
        assert proc.wait(timeout=60) == 0 and _same_weights(tmp_path / name, material)

    killed_while_writing = 0
    for i, name in enumerate(["out.pth"] * 8 + ["out.neutral"] * 4):
        dst = tmp_path / name
        if not dst.exists():
            wb.convert(material.neutral, dst, ARCH)
        proc = _convert_cli(material.neutral, dst, env)
        if i % 4 == 3:  # anywhere from start-up to the end
            time.sleep(rng.uniform(0.0, 3.0))
        elif _wait_for_temporary(proc, tmp_path):  # at once, or somewhere in the write or renames
            time.sleep(0.0 if i % 4 == 0 else rng.uniform(0.0, 1.2 * lifetime[name]))
        if proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)
            killed_while_writing += _temporary_exists(tmp_path)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if dst.exists():
            assert _same_weights(dst, material), f"kill {i}: {dst} is not a complete checkpoint"
        else:
            assert name == "out.neutral", f"kill {i}: {dst} vanished"  # between its two renames
        # Only hidden temporaries may remain beside it: never a partial file under the real name.
        assert all(p.name in ("out.pth", "out.neutral") or p.name.startswith(".out.") for p in tmp_path.iterdir())
    # Three kills at the temporary's first sighting land in the write for certain; the others may.
    assert killed_while_writing >= 3, (f"only {killed_while_writing} kills landed while writing "
                                       f"(temporary lifetimes {lifetime}); the test lost its point")


FSIZE_SCRIPT = r"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
from conformance import cli
codes = [cli.main(["convert", sys.argv[1], dst, "--arch", "googlenet", "--overwrite", "--quiet"]) for dst in sys.argv[2:]]
print("CODES", *codes)
"""


def test_write_error_leaves_old_or_nothing(material, tmp_path):
    """A full disk (RLIMIT_FSIZE) while writing each format: exit 6, one line, the previous file intact.
    Orbax goes on writing (and logging) after its first failure: nothing of that may show or stay."""
    previous = write(tmp_path / "prev.pth", b"previous")
    dsts = [previous, tmp_path / "new.msgpack", tmp_path / "new.neutral", tmp_path / "new.orbax"]
    before = listing(tmp_path)
    proc = subprocess.run([sys.executable, "-c", FSIZE_SCRIPT, str(material.pth), *map(str, dsts)], cwd=REPO,
                          env=environment(), capture_output=True, text=True)
    assert proc.stdout.split() == ["CODES", "6", "6", "6", "6"], proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("inception-bridge: error:")]
    assert len(errors) == len(lines) == 4 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert all(str(d) in e and "could not be written" in e for d, e in zip(dsts, errors)), errors
    assert listing(tmp_path) == before and previous.read_bytes() == b"previous"


@pytest.mark.parametrize("name", ["out.pth", "out.neutral", "out.orbax"])
def test_failing_rename_leaves_old_file(material, tmp_path, monkeypatch, name):
    """os.replace failing at the commit step: OutputError, previous output intact, no temporaries."""
    dst = tmp_path / name
    wb.convert(material.neutral, dst, ARCH)
    before = listing(tmp_path)
    real, calls = os.replace, []

    def failing(a, b):
        calls.append((a, b))
        if Path(b) == dst and (Path(a).name.endswith(".tmp") or Path(a).parent.name.endswith(".tmp")):
            # the rename that would install the new output (a restore of the old one still works)
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(wb.OutputError, match="No space left on device") as info:
        wb.convert(material.neutral, dst, ARCH, overwrite=True)
    monkeypatch.undo()
    assert str(dst) in str(info.value) and calls
    assert listing(tmp_path) == before and _same_weights(dst, material)


ABANDONED_WRITE = """import gc
from weights_bridge import orbax_io

def async_serialize_from_host():  # the names of Orbax's writer, whose coroutines a failure abandons
    async def write_fragment():
        pass
    return write_fragment()

orbax_io.quiet_abandoned_writes()
fragment = async_serialize_from_host()
del fragment
gc.collect()
"""


def test_an_abandoned_orbax_write_says_nothing():
    """The coroutine never awaited that a failed Orbax save leaves is freed whenever the collector
    gets to it, a warning per leaf (once it landed among the bridge's one-line errors): dropped,
    that warning alone (a coroutine of the same names stands in for Orbax's)."""
    proc = subprocess.run([sys.executable, "-W", "default", "-c", ABANDONED_WRITE], cwd=REPO, env=environment(),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    unfiltered = ABANDONED_WRITE.replace("orbax_io.quiet_abandoned_writes()", "")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", unfiltered], cwd=REPO, env=environment(),
                          capture_output=True, text=True)
    assert "was never awaited" in proc.stderr  # the stand-in raises the warning the filter drops
