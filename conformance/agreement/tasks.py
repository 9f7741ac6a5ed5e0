"""What the matrix runs: a task is one architecture's forward in one mode at one input size."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from impls.spec import model_spec


@dataclass(frozen=True)
class Task:
    arch: str
    mode: str
    size: int
    batch: int = 2
    layers: bool = False  # also capture every block's output (verify --layers)

    @property
    def id(self):
        return f"{self.arch}-{self.mode}-{self.size}"


def default_tasks(arch, sizes=None, layers=False, variant=None):
    """Eval at the native size and an odd one, train mode at the native size."""
    cfg = model_spec(arch, variant=variant).config
    size = cfg.input_size[-1]
    # The second, odd size exercises ceil_mode and padding (a variant may run at few sizes only).
    sizes = sizes or cfg.verify_sizes or (size, size - 25)
    # Train mode at batch 4: at batch 2 a BN over a 1x1 map (Inception v3's aux conv1) sees two
    # values per channel, and x -> (x - mean) / sqrt(var + eps) amplifies rounding up to
    # 1/sqrt(eps) = 32x when they nearly coincide; four values make that vanishingly rare.
    return [Task(arch, "eval", s, layers=layers) for s in sizes] + [Task(arch, "train", size, batch=4)]


def make_inputs(tasks, workdir, seed=0):
    """{task id: .npy path} of seeded standard-normal NCHW batches, one file per (batch, size)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    out = {}
    for t in tasks:
        path = Path(workdir) / f"input-{t.batch}x{t.size}.npy"
        if not path.exists():
            rng = np.random.default_rng([seed, t.size, t.batch])
            np.save(path, rng.standard_normal((t.batch, 3, t.size, t.size), dtype=np.float32))
        out[t.id] = str(path)
    return out
