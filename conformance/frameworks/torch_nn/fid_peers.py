"""pytorch-fid's and torch-fidelity's FID Inception in the torch worker, each built the way its
users build it: the library's own constructor, which loads its weights from torch.hub's cache
(``weights_bridge.peers.fid_inception.CACHED_FILES``; ``torch.load(weights_only=True)``,
``load_state_dict(strict=True)``), here pointed at a folder holding the exported file.

Both take the model's input as it is: pytorch-fid with ``resize_input=False,
normalize_input=False`` ([-1, 1] floats), torch-fidelity uint8 images, which it resizes (299 -> 299
in TF1's rule: the identity) and maps to (k - 128) / 128 itself; the engine's inputs for the FID
network are such values (``conformance.agreement.tasks``)."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from weights_bridge.peers.fid_inception import CACHED_FILES

# torch-fidelity's feature names -> ours (impls.spec.inception_v3, variant "fid").
FIDELITY_FEATURES = {"64": "pool_64", "192": "pool_192", "768": "pool_768", "2048": "pool3",
                     "logits_unbiased": "logits_unbiased", "logits": "logits"}
# pytorch-fid's InceptionV3.blocks, as its constructor lays them out: block index -> the stages
# of ours it holds, in order (its state_dict and BN names are "blocks.<block>.<index>....").
PYTORCH_FID_BLOCKS = (("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"),
                      ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"),
                      ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                      ("Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"))
PYTORCH_FID_FEATURES = ("pool_64", "pool_192", "pool_768", "pool3")  # one per block


def from_hub_cache(impl: str, peer_file, build):
    """``build()``, with torch.hub's folder a temporary one where ``peer_file`` has the name
    ``impl`` downloads its weights to; the hub folder is restored after."""
    import torch

    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory(prefix="inception-bridge-hub-") as hub:
        os.makedirs(os.path.join(hub, "checkpoints"))
        os.symlink(os.path.abspath(peer_file), os.path.join(hub, "checkpoints", CACHED_FILES[impl]))
        torch.hub.set_dir(hub)
        try:
            return build()
        finally:
            torch.hub.set_dir(previous)


def load(impl: str, peer_file):
    if impl == "pytorch-fid":
        from pytorch_fid.inception import InceptionV3

        return from_hub_cache(impl, peer_file, lambda: InceptionV3(
            output_blocks=[0, 1, 2, 3], resize_input=False, normalize_input=False, requires_grad=False))
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return from_hub_cache(impl, peer_file, lambda: FeatureExtractorInceptionV3(
        "inception-v3-compat", list(FIDELITY_FEATURES), verbose=False))


def canonical_name(impl: str, name: str) -> str:
    """A peer's module or tensor name as ours (pytorch-fid's ``blocks.2.0.branch1x1.bn`` ->
    ``Mixed_5b.branch1x1.bn``); torch-fidelity's are ours already."""
    if impl != "pytorch-fid" or not name.startswith("blocks."):
        return name
    _, block, index, *rest = name.split(".")
    return ".".join([PYTORCH_FID_BLOCKS[int(block)][int(index)], *rest])


def run(model, impl: str, x) -> dict:
    """The peer's outputs on ``x`` (NCHW, [-1, 1]) as {our field: array}."""
    import torch
    from torch.nn.functional import adaptive_avg_pool2d

    if impl == "pytorch-fid":  # its fid_score pools each block's output to 1x1 the same way
        blocks = model(torch.from_numpy(x))
        return {f: torch.flatten(adaptive_avg_pool2d(b, 1), 1).numpy() for f, b in zip(PYTORCH_FID_FEATURES, blocks)}
    pixels = np.rint(x.astype(np.float64) * 128 + 128)
    if not np.array_equal((pixels.astype(np.float32) - 128) / 128, x) or pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("torch-fidelity takes uint8 images: the input is not (k - 128) / 128 of 0..255 pixels")
    features = model(torch.from_numpy(pixels.astype(np.uint8)))
    return {FIDELITY_FEATURES[k]: v.numpy() for k, v in zip(FIDELITY_FEATURES, features)}


# The peers' feature extraction as their FID code runs it, and at its best on a CPU.
# "default": pytorch_fid.fid_score (InceptionV3([3]): resize_input and normalize_input on, ToTensor's
# float [0, 1] NCHW input, torch.no_grad) and torch-fidelity's utils (uint8 NCHW, torch.no_grad).
# "channels_last": the same under torch.inference_mode, model and input channels-last;
# "+compile": also torch.compile'd.
PEER_BENCH_CONFIGS = ("default", "channels_last", "channels_last+compile")


def bench_model(impl: str, peer_file):
    """The peer's model for FID's 2048 features, as its FID code builds it."""
    if impl == "pytorch-fid":
        from pytorch_fid.inception import InceptionV3

        return from_hub_cache(impl, peer_file, lambda: InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]))
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return from_hub_cache(impl, peer_file, lambda: FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], verbose=False))


def bench_call(job, config, images):
    """A call computing ``job["impl"]``'s pool3 features of uint8 NHWC ``images`` in ``config``,
    as numpy; its own model (``Module.to`` changes a model in place)."""
    import torch

    impl = job["impl"]
    model = bench_model(impl, job["weights"][impl]).eval()
    fmt, context = torch.contiguous_format, torch.no_grad
    if "channels_last" in config:
        model, fmt, context = model.to(memory_format=torch.channels_last), torch.channels_last, torch.inference_mode
    if "compile" in config:
        model = torch.compile(model)
    nhwc = torch.from_numpy(images)

    def features():
        with context():
            x = nhwc.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
            if impl == "pytorch-fid":  # ToTensor's [0, 1], then fid_score's own steps
                return model(x.float() / 255)[0].squeeze(3).squeeze(2).cpu().numpy()
            return model(x)[0].cpu().numpy()
    return features
