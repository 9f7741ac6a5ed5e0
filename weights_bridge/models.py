"""One-line loading: a framework's plain model, from a checkpoint in any format the bridge reads
or from the architecture registry alone.

    from weights_bridge.models import create_model
    model = create_model("torch", weights="inception_v3.neutral")          # architecture from the file
    model = create_model("flax", "googlenet", weights="googlenet.pth")     # a bare .pth: name it
    model = create_model("keras", "inception_v3")                          # Keras's own initialisers

It lives here, not in ``impls``: the translations know nothing of files (docs/architecture.md),
and it cannot sit in ``torch_io``/``flax_io``/``keras_io`` either, because ``formats.read`` (every
format) imports those modules. The weights go in through each framework's one loader
(``torch_io.to_model``, ``flax_io.to_model``, ``keras_io.to_model``), strictly. The model comes
back in the mode a freshly built one has (training, on torch and Flax): call ``eval()`` for
inference, or use ``inference.load_for_inference`` for the fast eval-only form.
"""
from __future__ import annotations

from . import flax_io, keras_io, torch_io
from .checkpoint import check_architecture
from .errors import BridgeError, WeightsMismatchError
from .formats import read

FRAMEWORKS = ("torch", "flax", "keras")


def create_model(framework: str, arch: str | None = None, weights=None, fmt: str | None = None, **overrides):
    """``framework``'s model of ``arch`` holding ``weights`` (a path in any format the bridge
    reads; ``fmt`` where its name does not tell). ``arch`` may be left out where the file records
    it (a neutral folder, a .keras archive); given, it must be the file's. Without ``weights``:
    the registry's model with the framework's default initialisation. ``overrides``: the
    framework's ``create_model`` keywords (``num_classes``, ``dropout``, Flax ``rngs``, Keras
    ``input_size``, ...); with weights, those that do not change the tensors (e.g. ``dropout``)."""
    if framework not in FRAMEWORKS:
        raise BridgeError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    if weights is None:
        if arch is None:
            raise BridgeError("create_model: name the architecture, or give weights whose file records it")
        check_architecture(arch, "create_model")
        return _registry_model(framework, arch, **overrides)
    ckpt = read(weights, fmt, arch)
    if arch is not None and ckpt.architecture != arch:
        raise WeightsMismatchError(f"{weights}: holds a {ckpt.architecture} checkpoint, not {arch}")
    if framework == "torch":
        return torch_io.to_model(ckpt, **overrides).train()
    if framework == "flax":
        model = flax_io.to_model(ckpt, **overrides)
        model.train()
        return model
    return keras_io.to_model(ckpt, **overrides)


def _registry_model(framework: str, arch: str, **overrides):
    if framework == "torch":
        from impls.torch_nn import create_model as build
    elif framework == "flax":
        from impls.flax_nnx import create_model as build
    else:
        from impls.keras3 import create_model as build
    return build(arch, **overrides)
