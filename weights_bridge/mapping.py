"""Strict application of the layout rules (after jax-ml/bonsai's key -> path tables).

Every native key must match exactly one rule, no two native keys may claim the same canonical
tensor, every expected tensor must be filled, none may be left over, and every shape must fit.
Any violation raises ``WeightsMismatchError`` naming the file, the tensor and the shapes.
"""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Tuple

import numpy as np

from .errors import WeightsMismatchError
from .layouts import Layout, canonical_key

Shape = Tuple[int, ...]
MAX_LISTED = 8


def fail(where: str, problems):
    """Raises ``WeightsMismatchError`` listing the first ``MAX_LISTED`` problems and how many more."""
    shown = "; ".join(problems[:MAX_LISTED])
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise WeightsMismatchError(f"{where}: {shown}{more}")


def plan(framework: str, native_keys: Iterable[str], where: str) -> Dict[str, Tuple[str, Layout]]:
    """native key -> (canonical key, layout), refusing zero or several matches either way."""
    out, claimed, problems = {}, {}, []
    for nk in native_keys:
        hits = canonical_key(framework, nk)
        if len(hits) != 1:
            problems.append(f"{framework} tensor {nk!r} matched {len(hits)} layout rules (expected exactly 1)")
            continue
        ck, layout = hits[0]
        if ck in claimed:
            problems.append(f"{framework} tensors {claimed[ck]!r} and {nk!r} both map to {ck!r}")
            continue
        claimed[ck] = nk
        out[nk] = (ck, layout)
    if problems:
        fail(where, problems)
    return out


def canonical_arrays(framework: str, native: Mapping[str, np.ndarray], where: str) -> Dict[str, np.ndarray]:
    """Native {key: array} (any subset of a model's tensors, any dtype: gradients, optimizer
    results, float64 steps) in canonical names and layouts, each key matching exactly one rule."""
    return {ck: layout.to_canonical(np.asarray(native[nk])) for nk, (ck, layout) in plan(framework, native, where).items()}


def check_canonical(tensors: Mapping[str, np.ndarray], expected: Mapping[str, Shape], where: str,
                    allow_nonfinite: bool = False):
    """The tensors are exactly the expected set, with the expected shapes, float32 and finite."""
    problems = []
    for k in expected:
        if k not in tensors:
            problems.append(f"missing tensor {k!r} (expected shape {tuple(expected[k])})")
    for k, a in tensors.items():
        if k not in expected:
            problems.append(f"unexpected tensor {k!r} (shape {tuple(a.shape)})")
        elif tuple(a.shape) != tuple(expected[k]):
            problems.append(f"tensor {k!r} has shape {tuple(a.shape)}, expected {tuple(expected[k])}")
        elif a.dtype != np.float32:
            problems.append(f"tensor {k!r} has dtype {a.dtype}, expected float32 (the bridge never casts silently)")
        elif not allow_nonfinite and not np.isfinite(a).all():
            problems.append(f"tensor {k!r} contains NaN or Inf (allow_nonfinite=True / --allow-nonfinite to accept)")
    if problems:
        fail(where, problems)


def to_canonical(framework: str, native: Mapping[str, np.ndarray], expected: Mapping[str, Shape], where: str,
                 allow_nonfinite: bool = False, consume: bool = False) -> Dict[str, np.ndarray]:
    """Native tensors -> canonical names and layout, checked against ``expected``. ``consume``
    empties ``native`` (a dict the caller owns) as it goes, so a native tensor and its transposed
    copy are never all held at once (peak: one copy of the checkpoint, not two)."""
    mapping = plan(framework, native, where)
    take = native.pop if consume else native.__getitem__
    out = {ck: layout.to_canonical(np.asarray(take(nk))) for nk, (ck, layout) in mapping.items()}
    check_canonical(out, expected, where, allow_nonfinite)
    return out


def native_plan(framework: str, canonical: Mapping[str, np.ndarray], native_shapes: Mapping[str, Shape],
                where: str) -> Dict[str, Tuple[str, Layout]]:
    """native key -> (canonical key, layout) for every native key of a target model, after every
    check ``to_native`` makes, without converting any data: writers that stream (one tensor in
    native layout at a time) keep peak memory near one copy of the checkpoint."""
    mapping = plan(framework, native_shapes, where)
    problems = []
    wanted = {ck for ck, _ in mapping.values()}
    for nk, (ck, layout) in mapping.items():
        if ck not in canonical:
            problems.append(f"target {framework} tensor {nk!r} left unfilled: no tensor {ck!r}")
            continue
        shape = layout.native_shape(np.shape(canonical[ck]))
        if tuple(shape) != tuple(native_shapes[nk]):
            problems.append(f"tensor {ck!r} gives {framework} {nk!r} shape {tuple(shape)}, "
                            f"expected {tuple(native_shapes[nk])}")
    problems += [f"unexpected tensor {k!r}: no {framework} target takes it" for k in canonical if k not in wanted]
    if problems:
        fail(where, problems)
    return mapping


def to_native(framework: str, canonical: Mapping[str, np.ndarray], native_shapes: Mapping[str, Shape],
              where: str) -> Dict[str, np.ndarray]:
    """Canonical tensors -> every native key of a target model, each filled exactly once."""
    return {nk: layout.to_native(np.asarray(canonical[ck]))
            for nk, (ck, layout) in native_plan(framework, canonical, native_shapes, where).items()}
