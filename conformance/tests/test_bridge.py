"""The weight bridge: lossless in all six directions, strict, and all-or-nothing on failure."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

import weights_bridge as wb

from .helpers import run_cli


def _load(path):
    return {k: v for k, v in torch.load(path, weights_only=True).items() if not k.endswith("num_batches_tracked")}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_six_directions_are_bit_identical(pool, googlenet_pth, tmp_path):
    """Every ordered pair of torch, flax and keras: the first through the CLI, the Keras ones in the
    Keras worker (this process never imports keras), the rest here; all the bridge's ``convert``."""
    src = googlenet_pth
    steps = [  # (from, to): every ordered pair of torch, flax, keras appears
        (src, tmp_path / "a.msgpack"),  # torch -> flax
        (src, tmp_path / "a.weights.h5"),  # torch -> keras
        (tmp_path / "a.msgpack", tmp_path / "b.weights.h5"),  # flax -> keras
        (tmp_path / "a.weights.h5", tmp_path / "b.msgpack"),  # keras -> flax
        (tmp_path / "b.weights.h5", tmp_path / "c.pth"),  # keras -> torch
        (tmp_path / "b.msgpack", tmp_path / "d.pth"),  # flax -> torch
    ]
    run_cli("convert", *steps[0], "--arch", "googlenet", "--quiet", check=True)
    for a, b in steps[1:]:
        if ".weights.h5" in f"{a}{b}":
            pool.request("keras-tensorflow", "convert", src=str(a), dst=str(b), architecture="googlenet")
        else:
            wb.convert(a, b, "googlenet")
    original = _load(src)
    _assert_identical(original, _load(tmp_path / "c.pth"))  # torch -> flax -> keras -> torch
    _assert_identical(original, _load(tmp_path / "d.pth"))  # torch -> keras -> flax -> torch


def test_six_directions_with_orbax_and_keras_archives_are_bit_identical(pool, googlenet_pth, tmp_path):
    """Every ordered pair of torch, an Orbax folder and a .keras archive, and each new format to
    and from its framework's other one (.msgpack, .weights.h5); Keras in the Keras worker."""
    src, t = googlenet_pth, tmp_path
    steps = [
        (src, t / "a.orbax"), (src, t / "a.keras"),  # torch -> orbax, torch -> archive
        (t / "a.orbax", t / "b.keras"), (t / "a.keras", t / "b.orbax"),  # orbax -> archive -> orbax
        (t / "b.keras", t / "c.pth"), (t / "b.orbax", t / "d.pth"),  # archive -> torch, orbax -> torch
        (t / "a.orbax", t / "e.msgpack"), (t / "e.msgpack", t / "e.orbax"), (t / "e.orbax", t / "e.pth"),
        (t / "a.keras", t / "f.weights.h5"), (t / "f.weights.h5", t / "f.keras"), (t / "f.keras", t / "f.pth"),
    ]
    for a, b in steps:
        if ".keras" in f"{a}{b}" or ".weights.h5" in f"{a}{b}":
            pool.request("keras-tensorflow", "convert", src=str(a), dst=str(b), architecture="googlenet")
        else:
            wb.convert(a, b, "googlenet")
    original = _load(src)
    for name in ("c.pth", "d.pth", "e.pth", "f.pth"):
        _assert_identical(original, _load(t / name))
    assert wb.detect(t / "a.orbax") == "orbax" and wb.detect(t / "a.keras") == "keras-archive"


def test_neutral_round_trip_and_torchvision_strict_load(googlenet_pth, tmp_path):
    import torchvision

    ckpt = wb.read(googlenet_pth, architecture="googlenet")
    wb.write(ckpt, tmp_path / "n")
    cfg = json.loads((tmp_path / "n" / "config.json").read_text())
    # The checkpoint's facts as torchvision's GoogLeNet_Weights.IMAGENET1K_V1 documents them.
    assert cfg == {"format_version": 1, "architecture": "googlenet", "variant": "default", "num_classes": 1000,
                   "aux_logits": True, "transform_input": False, "input_size": [3, 224, 224], "input_space": "RGB",
                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "label_offset": 0,
                   "padding_convention": "torch symmetric; max pools ceil_mode=True"}
    assert wb.read(tmp_path / "n").checkpoint_facts()["mean"] == [0.485, 0.456, 0.406]  # read back
    wb.convert(tmp_path / "n", tmp_path / "back.pth")
    _assert_identical(_load(googlenet_pth), _load(tmp_path / "back.pth"))
    peer = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    peer.load_state_dict(torch.load(tmp_path / "back.pth", weights_only=True), strict=True)


def test_flax_file_loads_into_live_model(googlenet_pth, tmp_path):
    from weights_bridge import flax_io

    wb.convert(googlenet_pth, tmp_path / "g.msgpack", "googlenet")
    model = flax_io.load_model(tmp_path / "g.msgpack", "googlenet")
    back = flax_io.from_model(model, "googlenet")
    original = _load(googlenet_pth)
    assert all(np.array_equal(back.tensors[k], original[k].numpy()) for k in original)


def _save_sd(path, sd):
    torch.save(sd, path)
    return path


@pytest.fixture()
def state_dict(googlenet_pth):
    return torch.load(googlenet_pth, weights_only=True)


def _assert_refused(tmp_path, src, error, *needles, arch="googlenet", **kw):
    dst = tmp_path / "out.msgpack"
    before = set(os.listdir(tmp_path))
    with pytest.raises(error) as info:
        wb.convert(src, dst, arch, **kw)
    message = str(info.value)
    assert str(src) in message, message
    for n in needles:
        assert n in message, message
    assert set(os.listdir(tmp_path)) == before, "something was written"
    return message


def test_missing_tensor(tmp_path, state_dict):
    del state_dict["inception4a.branch2.1.conv.weight"]
    src = _save_sd(tmp_path / "missing.pth", state_dict)
    _assert_refused(tmp_path, src, wb.WeightsMismatchError, "missing tensor 'inception4a.branch2.1.conv.weight'",
                    "(208, 96, 3, 3)")


def test_unexpected_tensor(tmp_path, state_dict):
    state_dict["extra.weight"] = torch.zeros(3)
    src = _save_sd(tmp_path / "extra.pth", state_dict)
    _assert_refused(tmp_path, src, wb.WeightsMismatchError, "unexpected tensor 'extra.weight'")


def test_wrong_shape(tmp_path, state_dict):
    state_dict["conv2.conv.weight"] = torch.zeros(64, 64, 3, 3)
    src = _save_sd(tmp_path / "shape.pth", state_dict)
    _assert_refused(tmp_path, src, wb.WeightsMismatchError, "'conv2.conv.weight'", "(64, 64, 3, 3)", "(64, 64, 1, 1)")


def test_wrong_architecture(tmp_path, googlenet_pth):
    # torchvision GoogLeNet-BN weights are not the paper's GoogLeNet (biased convs, 5x5 branch).
    _assert_refused(tmp_path, googlenet_pth, wb.WeightsMismatchError, "googlenet", arch="googlenet_paper")


def test_wrong_num_classes_in_config(tmp_path, googlenet_pth):
    wb.convert(googlenet_pth, tmp_path / "n", "googlenet")
    cfg_path = tmp_path / "n" / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "num_classes": 10}))
    _assert_refused(tmp_path, tmp_path / "n", wb.WeightsMismatchError, "'fc.weight'", "(1000, 1024)", "(10, 1024)")


def test_float64_is_refused_not_cast(tmp_path, state_dict):
    state_dict["fc.bias"] = state_dict["fc.bias"].double()
    src = _save_sd(tmp_path / "f64.pth", state_dict)
    _assert_refused(tmp_path, src, wb.WeightsMismatchError, "'fc.bias'", "float64")


def test_nan_refused_unless_allowed(tmp_path, state_dict):
    state_dict["fc.bias"][3] = float("nan")
    src = _save_sd(tmp_path / "nan.pth", state_dict)
    _assert_refused(tmp_path, src, wb.WeightsMismatchError, "'fc.bias'", "NaN")
    wb.convert(src, tmp_path / "ok.msgpack", "googlenet", allow_nonfinite=True)
    assert (tmp_path / "ok.msgpack").is_file()


class _Payload:
    def __reduce__(self):
        return (open, (os.environ["MARKER"], "w"))


def test_pickle_payload_is_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("MARKER", str(marker))
    legacy = tmp_path / "evil.pth"  # a bare pickle, as torch.save wrote before its zip format
    with open(legacy, "wb") as f:
        pickle.dump({"fc.weight": _Payload()}, f, protocol=2)
    zipped = tmp_path / "evil_zip.pth"  # today's torch.save zip archive with the same payload
    torch.save({"fc.weight": _Payload()}, zipped)
    for src in (legacy, zipped):
        _assert_refused(tmp_path, src, wb.UnsafeInputError, "refused to unpickle")
    assert not marker.exists()


def test_pickled_module_is_refused(tmp_path):
    from impls.torch_nn import googlenet

    src = tmp_path / "module.pth"
    torch.save(googlenet(), src)
    _assert_refused(tmp_path, src, wb.UnsafeInputError, "state_dict")


def test_existing_output_needs_overwrite(tmp_path, googlenet_pth):
    dst = tmp_path / "out.pth"
    dst.write_bytes(b"previous")
    with pytest.raises(wb.OutputError, match="already exists"):
        wb.convert(googlenet_pth, dst, "googlenet")
    assert dst.read_bytes() == b"previous"
    wb.convert(googlenet_pth, dst, "googlenet", overwrite=True)
    _assert_identical(_load(googlenet_pth), _load(dst))
    assert sorted(os.listdir(tmp_path)) == ["out.pth"]


def test_cli_error_is_one_line_with_exit_code(tmp_path, state_dict):
    del state_dict["fc.bias"]
    src = _save_sd(tmp_path / "broken.pth", state_dict)
    proc = run_cli("convert", src, tmp_path / "out.msgpack", "--arch", "googlenet", "--quiet")
    assert proc.returncode == wb.WeightsMismatchError.exit_code
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "missing tensor 'fc.bias'" in proc.stderr
    assert not (tmp_path / "out.msgpack").exists()
    missing = run_cli("convert", tmp_path / "nope.pth", tmp_path / "x.pth", "--arch", "googlenet", "--quiet")
    assert missing.returncode == wb.InputFileError.exit_code and "no such file" in missing.stderr
