"""The FID Inception (``inception_v3`` variant ``fid``): every implementation against pytorch-fid
and torch-fidelity on seeded trained-like weights, and its weight file through all six
directions back to a file both peers load with their own strict constructors."""
import pytest
import torch

import weights_bridge as wb
from conformance import registry
from conformance.frameworks.torch_nn.fid_peers import canonical_name, from_hub_cache

from .helpers import require

pytestmark = pytest.mark.slow  # 299-pixel inputs through seven implementations


@pytest.fixture(scope="module")
def fid_matrix(pool, fid_weights, tmp_path_factory):
    from conformance.agreement import matrix as m

    require("pytorch_fid", "torch_fidelity")
    results, errors, _, _ = m.agreement("inception_v3", tmp_path_factory.mktemp("fid-matrix"), pool, variant="fid",
                                        source=fid_weights)
    return results, errors


def test_every_implementation_and_both_peers_ran(fid_matrix):
    results, errors = fid_matrix
    assert not errors, errors
    ran = {r.a for r in results} | {r.b for r in results}
    assert {"pytorch-fid", "torch-fidelity"} <= ran
    assert set(registry.implementations("inception_v3", "fid")) <= ran


def test_features_and_logits_agree_for_every_pair(fid_matrix):
    results, _ = fid_matrix
    bad = [f"{r.task} {r.a}/{r.b} {r.quantity}: rel {r.max_rel:.1e}" for r in results if not r.ok]
    assert not bad, "\n".join(bad)
    eval_features = [r for r in results if "eval" in r.task and r.quantity in ("pool3", "logits")]
    assert eval_features and max(r.max_rel for r in eval_features) <= 1e-5


def test_torch_is_bit_identical_to_both_peers(fid_matrix):
    results, _ = fid_matrix
    pairs = [r for r in results if {r.a, r.b} in ({"torch", "pytorch-fid"}, {"torch", "torch-fidelity"})]
    assert {r.quantity for r in pairs} >= {"pool3"}
    assert all(r.max_abs == 0.0 for r in pairs if "eval" in r.task), [(r.task, r.a, r.b, r.quantity, r.max_abs)
                                                                       for r in pairs]


def test_fid_weights_six_directions_then_both_peers_load_them_strictly(pool, fid_weights, tmp_path):
    t = tmp_path
    steps = [  # every ordered pair of torch, flax and keras; back out in both peers' file formats
        (fid_weights, t / "a.msgpack", None), (fid_weights, t / "a.weights.h5", None),
        (t / "a.msgpack", t / "b.weights.h5", None), (t / "a.weights.h5", t / "b.msgpack", None),
        (t / "b.weights.h5", t / "pytorch_fid.pth", "pytorch-fid"), (t / "b.msgpack", t / "fidelity.pth", "torch-fidelity"),
    ]
    for src, dst, fmt in steps:
        if ".weights.h5" in f"{src}{dst}":
            pool.request("keras-tensorflow", "convert", src=str(src), dst=str(dst), fmt=fmt,
                         architecture="inception_v3", variant="fid")
        else:
            wb.convert(src, dst, "inception_v3", dst_format=fmt, variant="fid")
    original = torch.load(fid_weights, weights_only=True)
    for name, impl in (("pytorch_fid.pth", "pytorch-fid"), ("fidelity.pth", "torch-fidelity")):
        exported = torch.load(t / name, weights_only=True)
        assert exported.keys() == original.keys()
        assert all(torch.equal(exported[k], original[k]) for k in original), name
        model = from_hub_cache(impl, t / name, lambda: _peer(impl))  # strict load_state_dict inside
        loaded = {canonical_name(impl, k): v for k, v in model.state_dict().items()}
        kept = [k for k in original if impl == "torch-fidelity" or not k.startswith("fc.")]  # pytorch-fid drops fc
        assert sorted(loaded) == sorted(kept)
        assert all(torch.equal(loaded[k], original[k]) for k in kept), impl


def _peer(impl):
    if impl == "pytorch-fid":
        from pytorch_fid.inception import InceptionV3

        return InceptionV3([3])
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
