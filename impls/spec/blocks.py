"""Framework-free composite nodes: every Inception-family block is one of these, given as data.

* ``Sequential``: named steps run in order (torch's ``nn.Sequential``; an aux head is one with
  names such as ``conv``/``fc1``, timm's nested Sequentials use positions '0', '1', ...).
* ``Branches``: parallel paths on the same input, concatenated on channels. Each path is a chain
  of steps, a step being ``(attribute name, node)`` or a ``Split``; every step is registered flat
  on the block under its name, in path order, as torchvision and timm register them
  (``Mixed_7b.branch3x3_2a``, ``inception3a.branch2.1``).
* ``Split``: parallel named steps ending a path, concatenated (Inception v3's 1x3 / 3x1 pairs).
* ``Residual``: ``act(x + scale * project(concat(branches)))``, Inception-ResNet's blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from .layers import Conv2d, Node, Shape, feature_map


def seq(*nodes) -> "Sequential":
    """A Sequential whose steps are named by position, as torch's ``nn.Sequential(*nodes)``."""
    return Sequential(tuple((str(i), n) for i, n in enumerate(nodes)))


def _chain(steps, shape: Shape, biases: bool):
    params = macs = 0
    for _, node in steps:
        shape, p, m = node.cost(shape, biases)
        params, macs = params + p, macs + m
    return shape, params, macs


def _concat(node, shapes, what):
    if len({s[1:] for s in shapes}) != 1:
        raise ValueError(f"{node.kind} {what} disagree on spatial size: {shapes}")
    return (sum(s[0] for s in shapes), *shapes[0][1:])


@dataclass(frozen=True)
class Sequential(Node):
    steps: Tuple[Tuple[str, Any], ...]

    def children(self):
        return self.steps

    def __len__(self):
        return len(self.steps)

    def channels(self, cin):
        for _, node in self.steps:
            cin = node.channels(cin)
        return cin

    def cost(self, shape, biases=True):
        return _chain(self.steps, tuple(shape), biases)


@dataclass(frozen=True)
class Split(Node):
    """Parallel (name, node) steps on the same input, concatenated along channels. It ends its path."""

    parts: Tuple[Tuple[str, Any], ...]

    def children(self):
        return self.parts

    def channels(self, cin):
        return sum(node.channels(cin) for _, node in self.parts)

    def cost(self, shape, biases=True):
        costs = [node.cost(shape, biases) for _, node in self.parts]
        out = _concat(self, [c[0] for c in costs], "parts")
        return out, sum(c[1] for c in costs), sum(c[2] for c in costs)


def _steps(path):
    """A path's steps as (name, node) pairs; a Split is one step named by its parts."""
    return [("/".join(n for n, _ in s.parts), s) if isinstance(s, Split) else s for s in path]


@dataclass(frozen=True)
class Branches(Node):
    """Parallel paths concatenated on channels; ``label`` names the block kind for people
    (``InceptionA``, ``Mixed_5b``'s class in torchvision) and changes nothing else."""

    in_channels: int
    paths: Tuple[Any, ...]
    label: str = ""

    def children(self):
        """Every step, a Split's parts included, in registration order."""
        out = []
        for path in self.paths:
            for name, node in _steps(path):
                out += list(node.parts) if isinstance(node, Split) else [(name, node)]
        return tuple(out)

    def channels(self, cin):
        total = 0
        for path in self.paths:
            c = cin
            for _, node in _steps(path):
                c = node.channels(c)
            total += c
        return total

    @property
    def out_channels(self) -> int:
        return self.channels(self.in_channels)

    def cost(self, shape, biases=True):
        feature_map(self, shape)
        outs, params, macs = [], 0, 0
        for path in self.paths:
            out, p, m = _chain(_steps(path), tuple(shape), biases)
            outs.append(out)
            params, macs = params + p, macs + m
        return _concat(self, outs, "paths"), params, macs


@dataclass(frozen=True)
class Residual(Branches):
    """timm's Block35 / Block17 / Block8: ``act(x + scale * project(concat(branches)))``; the
    up-projection is a bare 1x1 conv with bias. ``relu=False`` is IRv2's final ``block8``."""

    project: Conv2d = None
    scale: float = 1.0
    relu: bool = True

    def children(self):
        return super().children() + (("conv2d", self.project),)

    def channels(self, cin):
        return cin

    def cost(self, shape, biases=True):
        out, params, macs = super().cost(shape, biases)
        out, p, m = self.project.cost(out, biases)
        if out != tuple(shape):
            raise ValueError(f"{self.kind} projects to {out}, the residual input is {tuple(shape)}")
        return out, params + p, macs + m
