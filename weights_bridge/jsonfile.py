"""The small JSON files inside checkpoint folders (neutral config.json, Orbax's _METADATA), read
with every failure a one-line ``InputFileError`` naming the file."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import InputFileError


def read_json(path: Path, missing: str, max_bytes: int, too_big: str):
    """The parsed JSON of ``path``. ``missing``: what needs the file (said when it is absent);
    ``too_big``: what was expected instead of a file over ``max_bytes``."""
    if not path.is_file():
        raise InputFileError(f"{path}: missing: {missing}, found {'a folder' if path.is_dir() else 'nothing'}")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputFileError(f"{path}: {size} bytes; {too_big}")
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise InputFileError(f"{path}: not valid JSON ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise InputFileError(f"{path}: cannot be read ({e.strerror or e})") from None
