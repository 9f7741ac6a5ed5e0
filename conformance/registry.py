"""Every implementation the engine runs, ours and the peers', in one table.

An implementation runs in a worker *process* (``process``): one per framework, because
tensorflow imported before torchvision or timm crashes the process and ``KERAS_BACKEND`` is fixed
when keras is first imported. The torch-based peers share the torch process, keras.applications
the Keras-on-TensorFlow one. Adding a peer or a backend is one entry here (docs/architecture.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from weights_bridge.extras import missing
from weights_bridge.peers import fid_inception, keras_applications, pretrainedmodels, timm

UNBIASED, BIASED = "unbiased", "biased"  # BN running-variance update: torch's n/(n-1), Flax/Keras's n


@dataclass(frozen=True)
class Implementation:
    name: str
    process: str  # the worker process that runs it
    requires: Tuple[str, ...]  # modules that must be installed (never imported to find out)
    ours: bool = False
    archs: Optional[Tuple[str, ...]] = None  # a peer's architectures (None: every architecture)
    variants: Tuple[str, ...] = ("default",)  # a peer's checkpoint variants
    bn_variance: str = BIASED
    peer_format: Optional[str] = None  # the bridge format of the peer's own checkpoint file
    # The output fields a peer gives where it gives fewer than ours (pytorch-fid: features, no
    # logits): compared on those; None: every field.
    outputs: Optional[Tuple[str, ...]] = None

    def runs(self, arch: str, variant: str = "default") -> bool:
        """Whether this implementation runs a checkpoint of ``arch`` in ``variant`` (ours: every one)."""
        return self.ours or (arch in self.archs and (variant or "default") in self.variants)

    def available(self) -> bool:
        return not self.missing()

    def missing(self) -> list:
        """The modules it needs that are not installed (``extras.what_to_install`` names their extra)."""
        return missing(self.requires)


IMPLEMENTATIONS = {i.name: i for i in (
    Implementation("torch", "torch", ("torch",), ours=True, bn_variance=UNBIASED),
    Implementation("flax", "flax", ("jax", "flax"), ours=True),
    Implementation("keras-tensorflow", "keras-tensorflow", ("keras", "tensorflow"), ours=True),
    Implementation("keras-jax", "keras-jax", ("keras", "jax"), ours=True),
    Implementation("keras-torch", "keras-torch", ("keras", "torch"), ours=True),
    Implementation("torchvision", "torch", ("torch", "torchvision"), archs=("googlenet", "inception_v3"),
                   bn_variance=UNBIASED, peer_format="torch"),
    Implementation("timm", "torch", ("torch", "timm"), archs=timm.ARCHITECTURES, bn_variance=UNBIASED,
                   peer_format="timm"),
    Implementation("keras-applications", "keras-tensorflow", ("keras", "tensorflow"),
                   archs=keras_applications.ARCHITECTURES, variants=(keras_applications.VARIANT,),
                   peer_format="keras-applications"),
    Implementation("pretrainedmodels", "torch", ("torch", "pretrainedmodels"), archs=pretrainedmodels.ARCHITECTURES,
                   variants=(pretrainedmodels.VARIANT,), bn_variance=UNBIASED, peer_format="pretrainedmodels"),
    Implementation("pytorch-fid", "torch", ("torch", "torchvision", "pytorch_fid"), archs=fid_inception.ARCHITECTURES,
                   variants=(fid_inception.VARIANT,), bn_variance=UNBIASED, peer_format="pytorch-fid",
                   outputs=("pool_64", "pool_192", "pool_768", "pool3")),
    Implementation("torch-fidelity", "torch", ("torch", "torch_fidelity"), archs=fid_inception.ARCHITECTURES,
                   variants=(fid_inception.VARIANT,), bn_variance=UNBIASED, peer_format="torch-fidelity"),
)}
OURS = tuple(name for name, i in IMPLEMENTATIONS.items() if i.ours)
PEERS = tuple(name for name, i in IMPLEMENTATIONS.items() if not i.ours)


def get(name: str) -> Implementation:
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {name!r}; known: {', '.join(IMPLEMENTATIONS)}")
    return IMPLEMENTATIONS[name]


def available(name: str) -> bool:
    return get(name).available()


def implementations(arch: str, variant: str = "default", peers: bool = True, installed: bool = True):
    """The installed implementations that run ``arch`` in ``variant``: ours, then the peers
    (``installed=False``: those not installed instead)."""
    return [n for n, i in IMPLEMENTATIONS.items()
            if (peers or i.ours) and i.runs(arch, variant) and i.available() == installed]
