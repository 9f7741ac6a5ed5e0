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
    # Inputs (k - 128) / 128 of uint8 pixels k instead of standard normal: the FID Inception's
    # input, and the only input torch-fidelity's (uint8 images) can be given exactly.
    pixels: bool = False

    @property
    def id(self):
        return f"{self.arch}-{self.mode}-{self.size}"


def default_tasks(arch, sizes=None, layers=False, variant=None):
    """Eval at the native size and an odd one, train mode at the native size."""
    cfg = model_spec(arch, variant=variant).config
    size = cfg.input_size[-1]
    # The second, odd size exercises ceil_mode and padding (a variant may run at few sizes only).
    sizes = sizes or cfg.verify_sizes or (size, size - 25)
    pixels = bool(getattr(cfg, "features", ()))  # a feature extractor (the FID Inception) takes images
    # Train mode at batch 4: at batch 2 a BN over a 1x1 map (Inception v3's aux conv1) sees two
    # values per channel, and x -> (x - mean) / sqrt(var + eps) amplifies rounding up to
    # 1/sqrt(eps) = 32x when they nearly coincide; four values make that vanishingly rare.
    return [Task(arch, "eval", s, layers=layers, pixels=pixels) for s in sizes] + \
        [Task(arch, "train", size, batch=4, pixels=pixels)]


def make_inputs(tasks, workdir, seed=0):
    """{task id: .npy path} of seeded standard-normal NCHW batches, one file per (batch, size)."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    out = {}
    for t in tasks:
        path = Path(workdir) / f"input-{t.batch}x{t.size}{'-pixels' if t.pixels else ''}.npy"
        if not path.exists():
            rng = np.random.default_rng([seed, t.size, t.batch])
            shape = (t.batch, 3, t.size, t.size)
            x = (rng.integers(0, 256, shape).astype(np.float32) - 128) / 128 if t.pixels else \
                rng.standard_normal(shape, dtype=np.float32)
            np.save(path, x)
        out[t.id] = str(path)
    return out
