"""The checkpoint a matrix runs: a neutral folder (seeded test weights, or the user's file read
and checked here), and each peer's own file exported from it by the bridge in the peer's worker
(keras.applications' needs Keras on TensorFlow)."""
from __future__ import annotations

from pathlib import Path

from weights_bridge import formats, neutral

from .. import registry


def prepare(arch, workdir, pool, impls=(), seed=0, num_classes=None, aux_logits=True, variant=None, source=None,
            source_format=None) -> dict:
    """{"neutral": folder, peer: its own file for each peer in ``impls`` that runs this checkpoint}.
    Without ``source``: seeded trained-like weights (``conformance.frameworks.torch_nn.seed``) of
    ``variant``; with it, the file in any format the bridge reads (its variant decides which peers
    can run it)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = workdir / f"{arch}.neutral"
    if source is None:
        pool.request("torch", "seed", arch=arch, out=str(folder), seed=seed, num_classes=num_classes,
                     aux_logits=aux_logits, variant=variant or "default")
    else:
        fmt = formats.source_format(source, source_format)
        if "keras" in formats.required_modules(fmt) and registry.available("keras-tensorflow"):
            # Keras (on TensorFlow) loaded into the caller would crash its next torchvision
            # import: the file is read in the Keras worker (bad input comes back as the same error)
            pool.request("keras-tensorflow", "convert", src=str(source), dst=str(folder), fmt="safetensors",
                         src_format=fmt, architecture=arch, variant=variant)
        else:  # in this process, so bad input fails with the bridge's own message and exit code
            neutral.write(formats.read(source, fmt, arch, variant=variant), folder, overwrite=True)
    files = {"neutral": str(folder)}
    variant = checkpoint_variant(files)
    for name in impls:
        impl = registry.get(name)
        if impl.peer_format and impl.runs(arch, variant):
            dst = workdir / f"{arch}.{name}{formats.SUFFIX[impl.peer_format]}"
            pool.request(impl.process, "convert", src=str(folder), dst=str(dst), fmt=impl.peer_format)
            files[name] = str(dst)
    return files


def checkpoint_variant(files) -> str:
    return neutral.read_config(Path(files["neutral"])).get("variant", "default")


def checkpoint_config(files) -> dict:
    return neutral.read_config(Path(files["neutral"]))
