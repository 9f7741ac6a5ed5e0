"""Writes that either complete or leave nothing: write beside the destination, then rename."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import BridgeError, OutputError


def check_destination(path, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        found = "a file" if parent.exists() else "nothing"
        raise OutputError(f"{path}: cannot be written: expected a folder at {parent}, found {found}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: folder {parent} is not writable")
    return path


def _default_permissions(path: Path):
    """mkdtemp makes private (0700) folders; give the result the permissions a plain write would."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = False, directory: bool = False):
    """Yields a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    ``directory=True`` yields an empty folder to fill; otherwise a path that does not exist yet,
    which the writer makes a file or a folder (Orbax creates its checkpoint folder itself). The
    temporary's own folder is private to this write: a writer may keep scratch files beside it.
    On any exception the temporary is removed and ``path`` is untouched. A replaced folder (or a
    folder replacing a file) is first renamed aside, so at every instant ``path`` is absent or
    complete.
    """
    path = check_destination(path, overwrite)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise OutputError(f"{path}: cannot be written: no temporary file beside it ({e.strerror or e})") from e
    target = tmp if directory else tmp / path.name
    try:
        yield target
        _default_permissions(target)
        if target.is_dir():
            _replace_folder(target, path)
        else:
            with open(target, "rb") as f:
                os.fsync(f.fileno())
            os.replace(target, path)
    except OSError as e:
        raise OutputError(f"{path}: could not be written ({e.strerror or e})") from e
    except BridgeError:
        raise
    except Exception as e:  # writers wrap I/O failures in their own types (torch: RuntimeError, safetensors)
        reason = " ".join(str(e).split())[:300]
        raise OutputError(f"{path}: could not be written ({type(e).__name__}: {reason})") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_folder(folder: Path, path: Path):
    """Renames a complete ``folder`` to ``path``; whatever was at ``path`` is renamed aside
    first and removed after (put back if the rename fails)."""
    if not path.exists():
        os.replace(folder, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old / "x")
    try:
        os.replace(folder, path)
    except OSError:  # put the previous one back
        os.replace(old / "x", path)
        os.rmdir(old)
        raise
    shutil.rmtree(old, ignore_errors=True)
