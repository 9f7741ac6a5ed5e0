"""``diagnose`` names the convention behind a disagreement. Each test injects one mismatch into
a peer built independently of the switch under test and checks the verdict and its block."""
import copy

import numpy as np
import pytest
import torch

from conformance.agreement.diagnose import SWITCHES, diagnose
from conformance.frameworks.torch_nn.seed import randomize_
from impls.torch_nn import create_model

from .helpers import run_cli, run_python


@pytest.fixture(scope="module")
def ours():
    return randomize_(create_model("googlenet", aux_logits=False), seed=3).eval()


@pytest.fixture(scope="module")
def x():
    # 128 x 128, not 224: every switch still changes the outputs at the same block (ceil_mode at
    # maxpool1: 64 -> 31.5 pixels; TF 'same' at conv1: padding 2+3 against 3+3), at a third of the cost.
    return np.random.default_rng(7).standard_normal((2, 3, 128, 128), dtype=np.float32)


def _peer_logits(peer, x):
    with torch.no_grad():
        return peer.eval()(torch.from_numpy(x)).numpy()


def _verdict(ours, x, peer_logits):
    rep = diagnose(ours, x, peer_logits)
    assert not rep.baseline_agrees
    return {t.switch: t for t in rep.culprits}


def _torchvision_twin(ours):
    import torchvision

    peer = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    peer.load_state_dict(ours.state_dict())
    return peer


def test_agreeing_peer_needs_no_diagnosis(ours, x):
    assert diagnose(ours, x, _peer_logits(_torchvision_twin(ours), x)).baseline_agrees


def test_bn_eps(ours, x):
    peer = _torchvision_twin(ours)
    for m in peer.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-5  # rebuilt with PyTorch's default eps
    found = _verdict(ours, x, _peer_logits(peer, x))
    assert list(found) == ["bn_eps=1e-5"] and found["bn_eps=1e-5"].first_block == "conv1"


def test_ceil_mode(ours, x):
    import torchvision

    peer = torchvision.models.GoogLeNet(aux_logits=False, init_weights=False)
    for name in ("maxpool1", "maxpool2", "maxpool3", "maxpool4"):  # a port that forgot ceil_mode
        setattr(peer, name, torch.nn.MaxPool2d(getattr(peer, name).kernel_size, getattr(peer, name).stride))
    for inc in [m for m in peer.modules() if type(m).__name__ == "Inception"]:
        inc.branch4[0] = torch.nn.MaxPool2d(3, 1, 1)
    peer.load_state_dict(ours.state_dict())
    found = _verdict(ours, x, _peer_logits(peer, x))
    assert "ceil_mode" in found and found["ceil_mode"].first_block == "maxpool1"


def test_label_offset(ours, x):
    # A TF-slim style head: 1001 classes, background first.
    head = torch.nn.Linear(1024, 1001)
    with torch.no_grad():
        head.weight[1:] = ours.fc.weight
        head.bias[1:] = ours.fc.bias
        head.weight[0].normal_()
    peer = copy.deepcopy(ours)
    peer.fc = head
    assert list(_verdict(ours, x, _peer_logits(peer, x))) == ["label_offset"]


def test_bgr_input(ours, x):
    peer_logits = _peer_logits(ours, np.ascontiguousarray(x[:, ::-1]))  # the peer was fed BGR
    assert list(_verdict(ours, x, peer_logits)) == ["bgr"]


def test_count_include_pad_in_inception_v3():
    ours = randomize_(create_model("inception_v3", aux_logits=False), seed=4, calibration_size=299).eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 299, 299), dtype=np.float32)
    peer = copy.deepcopy(ours)
    for block in peer.modules():  # Keras' AveragePooling2D('same') leaves padding out of the divisor
        for name, child in block.named_children():
            if isinstance(child, torch.nn.AvgPool2d):
                setattr(block, name, torch.nn.AvgPool2d(3, 1, 1, count_include_pad=False))
    found = _verdict(ours, x, _peer_logits(peer, x))
    assert "count_include_pad" in found and found["count_include_pad"].first_block == "Mixed_5b"


KERAS_SAME_PADDING = r"""
import sys, numpy as np
from impls.keras3 import googlenet
from impls.keras3.layers import ConvBlock
from weights_bridge.keras_io import load_into
from weights_bridge import read
model = load_into(googlenet(aux_logits=False), read(sys.argv[1], architecture="googlenet"))
for layer in model._flatten_layers():
    if isinstance(layer, ConvBlock) and layer.conv.strides[0] == 2:
        layer.padding = (0, 0)          # drop our explicit symmetric padding ...
        layer.conv.padding = "same"     # ... and let Keras pad the TF way
x = np.random.default_rng(7).standard_normal((2, 3, 128, 128), dtype=np.float32)
logits = np.asarray(model(np.transpose(x, (0, 2, 3, 1))))
np.savez(sys.argv[2], logits=logits, input=x)
"""


def test_keras_same_padding_via_cli(ours, tmp_path):
    pth = tmp_path / "g.pth"
    torch.save(ours.state_dict(), pth)
    peer = tmp_path / "keras_same.npz"
    run_python(KERAS_SAME_PADDING, pth, peer)
    proc = run_cli("diagnose", "googlenet", "--weights", pth, "--against", peer)
    assert proc.returncode == 0, proc.stderr
    verdict = proc.stdout.strip().splitlines()[-1]
    assert verdict == "verdict: tf_same_padding", proc.stdout
    assert "tf_same_padding" in proc.stdout and "first matters at conv1" in proc.stdout


def test_transform_input(ours, x):
    peer = copy.deepcopy(ours)
    peer.transform_input = True  # torchvision's pretrained GoogLeNet turns this on
    found = _verdict(ours, x, _peer_logits(peer, x))
    assert list(found) == ["transform_input"] and found["transform_input"].first_block == "conv1"


def test_lrn_alpha_convention():
    ours = randomize_(create_model("googlenet_paper", aux_logits=False), seed=5).eval()
    x = np.random.default_rng(2).standard_normal((2, 3, 128, 128), dtype=np.float32)
    peer = copy.deepcopy(ours)
    for name in ("lrn1", "lrn2"):  # a port that took TF's alpha: not divided by the window size
        lrn = getattr(peer, name)
        setattr(peer, name, _TFStyleLRN(lrn.size, lrn.alpha, lrn.beta, lrn.k))
    found = _verdict(ours, x, _peer_logits(peer, x))
    assert "lrn_alpha_tf" in found and found["lrn_alpha_tf"].first_block == "lrn1"


class _TFStyleLRN(torch.nn.Module):
    """tf.nn.local_response_normalization, written out: b = a / (k + alpha * sum a^2) ** beta."""

    def __init__(self, size, alpha, beta, k):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, a):
        sq = torch.nn.functional.pad(a.pow(2), (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))
        window = sum(sq[:, i:i + a.shape[1]] for i in range(self.size))
        return a / (self.k + self.alpha * window).pow(self.beta)


def _nhwc_port_outputs(ours, x):
    """Eval-mode logits and aux outputs of a port that flattens the aux heads' 128x4x4 maps in
    NHWC order but kept PyTorch's fc1 weights: a converter that forgot the layout transform."""
    peer = copy.deepcopy(ours).eval()
    for head in (peer.aux1, peer.aux2):
        head.fc1.register_forward_pre_hook(
            lambda m, args: (args[0].view(-1, 128, 4, 4).permute(0, 2, 3, 1).flatten(1),))
    taps = {}
    with torch.no_grad():
        logits, _ = peer.forward_stages(torch.from_numpy(x), capture=taps)
        return {"logits": logits.numpy(), "aux1": peer.aux1(taps["inception4a"]).numpy(),
                "aux2": peer.aux2(taps["inception4d"]).numpy()}


def test_flatten_order_in_aux_heads(tmp_path):
    ours = randomize_(create_model("googlenet", aux_logits=True), seed=6).eval()
    x = np.random.default_rng(7).standard_normal((1, 3, 128, 128), dtype=np.float32)
    peer = _nhwc_port_outputs(ours, x)
    # The trunk never sees the slip: the logits alone agree, and the switch is not even tried.
    rep = diagnose(ours, x, peer["logits"], switches=[s for s in SWITCHES if s.name == "flatten_order"])
    assert rep.baseline_agrees and rep.silent == ["flatten_order"] and not rep.trials
    pth, npz = tmp_path / "g.pth", tmp_path / "nhwc_port.npz"
    torch.save(ours.state_dict(), pth)
    np.savez(npz, input=x, **peer)
    proc = run_cli("diagnose", "googlenet", "--weights", pth, "--against", npz)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "verdict: flatten_order", proc.stdout
    assert "compared: logits, aux1, aux2" in proc.stdout
    assert [ln for ln in proc.stdout.splitlines() if "AGREES" in ln and "first matters at aux1" in ln], proc.stdout
