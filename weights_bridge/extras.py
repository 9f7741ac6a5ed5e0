"""Which optional extra of the package brings each module the code imports when it is needed,
and the one line that says what to install when one is missing.

``pip install inception-bridge`` alone (numpy, safetensors) reads and writes the neutral format
and runs ``summary``; each extra of pyproject.toml adds one framework (``torch``, ``flax``,
``keras``) or the peers and tools of the conformance suite (``test``). Whether a module is there
is asked with ``importlib.util.find_spec``, which imports nothing (tensorflow must never be
imported by the way: it crashes a later torchvision import).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import MissingExtraError

# extra -> the top-level modules of its packages that our code imports (test_extras checks each
# extra's list in pyproject.toml brings them).
EXTRAS = {
    "torch": ("torch", "torchvision"),
    "flax": ("jax", "flax", "optax", "msgpack", "orbax", "tensorstore", "etils", "absl"),
    "keras": ("keras", "tensorflow", "h5py"),
    "test": ("timm", "pretrainedmodels", "onnx", "onnxruntime", "tf2onnx", "matplotlib", "pytest", "hypothesis",
             "pytorch_fid", "torch_fidelity", "cleanfid"),
}
EXTRA_OF = {module: extra for extra, modules in EXTRAS.items() for module in modules}
# Modules no extra brings, by their pip names.
PIP_NAMES = {"PIL": "pillow"}
OURS = ("impls", "weights_bridge", "fid", "conformance")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (a dotted name imports
    its parents only)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def missing(modules) -> list:
    """The top-level modules of ``modules`` that are not installed, in order."""
    return [m for m in dict.fromkeys(m.partition(".")[0] for m in modules) if not installed(m)]


def source_checkout():
    """The folder of the source checkout this package runs from (an editable install), else None."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    try:
        return root if 'name = "inception-bridge"' in pyproject.read_text() else None
    except OSError:
        return None


def pip_command(extras) -> str:
    """The command that installs ``extras`` into this environment, for an editable checkout or
    the package."""
    names = ",".join(extras)
    root = source_checkout()
    return f'pip install -e "{root}[{names}]"' if root else f'pip install "inception-bridge[{names}]"'


def what_to_install(modules) -> str:
    """'the [flax] extra (not installed: jax, flax): pip install -e "...[flax]"' for missing
    ``modules`` (top-level names); modules no extra brings are named with their own pip command."""
    extras = list(dict.fromkeys(EXTRA_OF[m] for m in modules if m in EXTRA_OF))
    others = [PIP_NAMES.get(m, m) for m in modules if m not in EXTRA_OF]
    parts = []
    if extras:
        label = f"the [{extras[0]}] extra" if len(extras) == 1 else \
            "the " + " and ".join(f"[{e}]" for e in extras) + " extras"
        parts.append(f"{label} (not installed: {', '.join(m for m in modules if m in EXTRA_OF)}): "
                     f"{pip_command(extras)}")
    if others:
        parts.append(f"{', '.join(others)} (not installed): pip install {' '.join(others)}")
    return "; and ".join(parts)


def require(what: str, modules) -> None:
    """Raises ``MissingExtraError`` (exit 2) naming ``what``, the extra and its pip command
    unless every one of ``modules`` is installed."""
    lacking = missing(modules)
    if lacking:
        raise MissingExtraError(f"{what} needs {what_to_install(lacking)}")


def as_missing_extra(error: ModuleNotFoundError, what: str):
    """A ``MissingExtraError`` for an import that failed because a package is not installed,
    else None (a module of ours, or a package that is there but broken: its traceback matters)."""
    name = (error.name or "").partition(".")[0]
    if not name or name in OURS or installed(name):
        return None
    return MissingExtraError(f"{what} needs {what_to_install([name])}")
