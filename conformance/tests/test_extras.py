"""Partial installs: with one extra of pyproject.toml installed, every command works with what is
there or stops with one line naming the missing extra and its pip command (exit 2).

A single-extra install is simulated in the CLI's process and its workers by
``uninstalled/sitecustomize.py``: it hides every module of ``extras.EXTRAS`` that the extra's
distributions (and the core dependencies), followed through their installed metadata, do not
bring. The real thing, one virtual environment per extra, was tried by hand (README, Install)."""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conformance.launch import REPO
from weights_bridge import extras
from weights_bridge.errors import MissingExtraError

from .helpers import run_cli

HIDER = Path(__file__).parent / "uninstalled"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def closure(requirements, seen=None) -> set:
    """The normalised names of the distributions ``requirements`` install, followed through the
    installed distributions' own requirements (with the extras they are asked for)."""
    seen = set() if seen is None else seen
    for text in requirements:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if name == "inception-bridge":
            closure([r for e in req.extras for r in PROJECT["optional-dependencies"][e]], seen)
            continue
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        wanted = [""] + sorted(req.extras)
        closure([r for r in requires if Requirement(r).marker is None
                 or any(Requirement(r).marker.evaluate({"extra": e}) for e in wanted)], seen)
    return seen


def brought_by(extra) -> set:
    """The modules of ``extras.EXTRAS`` a venv with the core dependencies and ``extra`` has."""
    dists = closure(PROJECT["dependencies"] + PROJECT["optional-dependencies"][extra])
    provided = md.packages_distributions()
    return {m for m in extras.EXTRA_OF if {d.lower().replace("_", "-") for d in provided.get(m, ())} & dists}


def only(extra) -> dict:
    """The environment of a CLI run as if only ``extra`` were installed."""
    hidden = sorted(set(extras.EXTRA_OF) - brought_by(extra))
    return {"PYTHONPATH": os.pathsep.join([str(REPO), str(HIDER)]), "UNINSTALLED": ",".join(hidden)}


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_each_extra_brings_its_modules(extra):
    """pyproject.toml's extra installs every module extras.py says it brings."""
    missing = [m for m in extras.EXTRAS[extra] if not extras.installed(m)]
    if missing:
        pytest.skip(f"not installed here: {missing}")
    assert set(extras.EXTRAS[extra]) <= brought_by(extra)


def test_hider_hides_as_pip_would():
    env = only("torch")
    assert "msgpack" in env["UNINSTALLED"] and "torch" not in env["UNINSTALLED"].split(",")
    proc = run_cli("summary", "googlenet", env=env)  # the CLI starts with no framework
    assert proc.returncode == 0 and "inception" in proc.stdout, proc.stderr


def refused(tmp_path, extra, args, needs):
    """``args`` run with only ``extra`` installed: exit 2, one line naming ``needs`` and its pip
    command, no traceback, nothing written."""
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli(*args, env=only(extra))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("inception-bridge: error: ") and f"the [{needs}] extra" in lines[0], lines[0]
    assert f'pip install -e "{REPO}[{needs}]"' in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return lines[0]


@pytest.fixture(scope="module")
def neutral(tmp_path_factory, googlenet_pth):
    out = tmp_path_factory.mktemp("neutral") / "g.neutral"
    run_cli("convert", googlenet_pth, out, "--arch", "googlenet", "--quiet", check=True)
    return out


@pytest.mark.parametrize("extra, what, needs", [
    ("torch", ("g.msgpack",), "flax"),
    ("torch", ("g.orbax",), "flax"),
    ("torch", ("g.weights.h5",), "keras"),
    ("torch", ("g.keras",), "keras"),
    ("flax", ("g.weights.h5",), "keras"),
    ("keras", ("g.msgpack",), "flax"),
    ("keras", ("g.pth",), "torch"),
    ("flax", ("g.pth", "--to", "timm"), "torch"),
])
def test_convert_to_a_missing_framework(tmp_path, neutral, extra, what, needs):
    line = refused(tmp_path, extra, ("convert", neutral, tmp_path / what[0], *what[1:]), needs)
    assert f"writing {tmp_path / what[0]}" in line


@pytest.mark.parametrize("extra, needs", [("flax", "torch"), ("keras", "torch")])
def test_read_a_missing_framework(tmp_path, googlenet_pth, extra, needs):
    refused(tmp_path, extra, ("convert", googlenet_pth, tmp_path / "g.neutral", "--arch", "googlenet"), needs)
    refused(tmp_path, extra, ("inspect", googlenet_pth, "--arch", "googlenet"), needs)


@pytest.mark.parametrize("extra, args, needs", [
    ("flax", ("verify", "googlenet"), "torch"),  # seeded weights come from torch
    ("keras", ("seed-weights", "googlenet", "s.pth"), "torch"),
    ("torch", ("seed-weights", "googlenet", "s.msgpack"), "flax"),
    ("torch", ("verify", "googlenet", "--impls", "torch,keras-tensorflow"), "keras"),
    ("torch", ("diagnose", "googlenet", "--weights", "w.pth", "--against", "flax"), "flax"),
    ("torch", ("export-onnx", "googlenet", "w.pth", "w.onnx"), "test"),
])
def test_commands_name_the_missing_extra(tmp_path, extra, args, needs):
    refused(tmp_path, extra, [str(tmp_path / a) if a.endswith(("s.pth", ".msgpack", ".onnx")) else a
                              for a in args], needs)


def test_fid_on_a_missing_framework(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):  # two: a covariance's least
        Image.new("RGB", (8, 8)).save(images / name)
    refused(tmp_path, "torch", ("fid", images, images, "--framework", "flax"), "flax")
    refused(tmp_path, "torch", ("fid-stats", images, tmp_path / "s.npz", "--framework", "keras"), "keras")


def test_the_neutral_format_needs_no_extra(tmp_path, neutral):
    """Any single extra reads and writes the neutral format."""
    for extra in ("flax", "keras"):
        out = tmp_path / f"{extra}.neutral"
        proc = run_cli("convert", neutral, out, "--quiet", env=only(extra))
        assert proc.returncode == 0 and (out / "model.safetensors").is_file(), proc.stderr[-2000:]


def skipped(stdout) -> dict:
    """verify's 'not installed, not run:' rows: {implementation: what installs it}."""
    rows = stdout.split("not installed, not run:\n")[1].split("\n\n")[0].split("\ngoogle")[0]
    return dict(line.split(None, 1) for line in rows.splitlines() if line.startswith("  "))


def test_verify_with_one_implementation(tmp_path, neutral):
    """Keras alone runs one implementation of GoogLeNet: nothing to compare, exit 2 naming an
    extra that brings another, after listing every one left out."""
    line = refused(tmp_path, "keras", ("verify", "googlenet", "--weights", neutral), "torch")
    assert "verify googlenet compares implementations and only keras-tensorflow is installed: torch needs" in line
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    proc = run_cli("verify", "googlenet", "--weights", neutral, env={**only("keras"), "TMPDIR": str(temporary)})
    assert set(skipped(proc.stdout)) == {"torch", "flax", "keras-jax", "keras-torch", "torchvision"}, proc.stdout
    assert not list(temporary.glob("inception-bridge-*")), "a refused verify left its temporary folder"


@pytest.mark.slow  # two torch workers: about 40 s on two cores
def test_verify_with_torch_alone(tmp_path, room):
    """torch and torchvision run and agree; the ones left out are named with the extra that brings them."""
    proc = run_cli("verify", "googlenet", "--sizes", "199", "--workdir", tmp_path, env=only("torch"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = skipped(proc.stdout)
    assert set(rows) == {"flax", "keras-tensorflow", "keras-jax", "keras-torch"}, rows
    assert rows["flax"].startswith("the [flax] extra (not installed: jax, flax)")
    assert rows["keras-jax"].startswith("the [keras] and [flax] extras")
    assert "torch outputs" in proc.stderr and "torchvision outputs" in proc.stderr
    assert re.search(r"\nall \d+ comparisons within tolerance", proc.stdout), proc.stdout


def test_a_missing_package_names_its_extra():
    """The CLI's net for an import no command checked first: an extra's module names the extra,
    another package its pip name; ours, or one that is installed, keep their traceback."""
    assert "torch" in extras.EXTRA_OF and extras.EXTRA_OF["msgpack"] == "flax"
    error = extras.as_missing_extra(ModuleNotFoundError("No module named 'no_such_pkg'", name="no_such_pkg.x"), "fid")
    assert isinstance(error, MissingExtraError) and error.exit_code == 2
    assert str(error) == "fid needs no_such_pkg (not installed): pip install no_such_pkg"
    assert extras.as_missing_extra(ModuleNotFoundError(name="weights_bridge.nope"), "fid") is None
    assert extras.as_missing_extra(ModuleNotFoundError(name="numpy.nope"), "fid") is None  # installed, broken
    assert extras.what_to_install(["jax", "keras"]) == (
        f'the [flax] and [keras] extras (not installed: jax, keras): pip install -e "{REPO}[flax,keras]"')
