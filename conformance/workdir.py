"""Where a command's workers keep their inputs, outputs and logs: a chosen folder, kept, or a temporary one."""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def work_folder(chosen, prefix: str):
    """``--workdir`` when given, kept afterwards for a look at the workers' files; otherwise a
    temporary folder removed when the command ends, failed or not: a failed worker's error already
    quotes its log, and the checkpoints converted inside reach gigabytes for the larger models."""
    if chosen:
        yield Path(chosen)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


def where(chosen, workdir: Path) -> str:
    """The note a progress line adds: the folder, when it outlives the command."""
    return f" (workers' files in {workdir})" if chosen else ""
