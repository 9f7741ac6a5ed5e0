"""Spec nodes as plain JSON data and back, for a framework that saves a layer's configuration
(Keras ``get_config``): ``{"node": "MaxPool", "kernel_size": [3, 3], ...}``, composites holding
their children the same way. Decoding builds only the spec's own node classes (a closed table
below), never a class a file names."""
from __future__ import annotations

import dataclasses

from . import blocks, layers

NODES = {cls.__name__: cls for module in (layers, blocks) for cls in vars(module).values()
         if isinstance(cls, type) and issubclass(cls, layers.Node) and dataclasses.is_dataclass(cls)
         and not cls.__name__.startswith("_")}  # _Pool: a base, never a node itself
KEY = "node"


def to_data(value):
    """A node (or a field's value) as JSON-ready data: dicts, lists, numbers, strings."""
    if isinstance(value, layers.Node):
        return {KEY: type(value).__name__,
                **{f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, (tuple, list)):
        return [to_data(v) for v in value]
    return value


def from_data(data):
    """The inverse of ``to_data`` (lists become the tuples the nodes hold); ValueError for a
    node type that is not the spec's."""
    if isinstance(data, dict):
        fields = dict(data)
        name = fields.pop(KEY, None)
        if name not in NODES:
            raise ValueError(f"not a spec node: {name!r} (known: {', '.join(sorted(NODES))})")
        return NODES[name](**{k: from_data(v) for k, v in fields.items()})
    if isinstance(data, list):
        return tuple(from_data(v) for v in data)
    return data
