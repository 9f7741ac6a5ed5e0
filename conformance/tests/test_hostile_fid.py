"""Bad inputs to ``fid``: each a one-line error naming the file (and the array or count at
fault), its exit code (3 unreadable, 4 unsafe, 5 does not fit), nothing written and nothing
unpickled. Listed in docs/hostile_inputs.md."""
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conformance.cli import main

D = 64  # --dims 64: the statistics' width
MARKER = Path("/tmp/inception-bridge-fid-unpickled")


def stats_file(path, dims=D, **changes):
    x = np.random.default_rng(0).normal(size=(100, dims))
    arrays = {"mu": x.mean(0), "sigma": np.cov(x, rowvar=False), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def images_file(path, array, name="images"):
    np.savez(path, **{name: array})
    return path


class Payload:
    def __reduce__(self):
        return (open, (str(MARKER), "w"))


def pickled(t):
    """A statistics .npz whose arrays are dtype object: numpy would unpickle them."""
    buf = io.BytesIO()
    np.save(buf, np.array([Payload()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(t / "s.npz", "w") as z:
        z.writestr("mu.npy", buf.getvalue())
        z.writestr("sigma.npy", buf.getvalue())
    return t / "s.npz"


def truncated(t):
    data = stats_file(t / "s.npz").read_bytes()
    (t / "s.npz").write_bytes(data[: len(data) // 2])
    return t / "s.npz"


def garbage(t):
    (t / "s.npz").write_bytes(b"\x93NUMPY not a zip archive")
    return t / "s.npz"


def single_npy(t):
    np.save(t / "s.npy", np.zeros(3))
    return (t / "s.npy").rename(t / "s.npz")


def non_symmetric(t):
    sigma = np.eye(D)
    sigma[0, 1] = 0.5
    return stats_file(t / "s.npz", sigma=sigma)


def empty_folder(t):
    (t / "imgs").mkdir()
    return t / "imgs"


def broken_image(t):
    from PIL import Image

    (t / "imgs").mkdir()
    (t / "imgs" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.new("RGB", (8, 8)).save(t / "imgs" / "b.png")
    return t / "imgs"


CASES = [  # (name, make(tmp) -> the bad A, exit code, words the message must hold)
    ("pickled arrays", pickled, 4, ["refused to unpickle", "'mu'"]),
    ("truncated npz", truncated, 3, ["unreadable"]),
    ("not a zip", garbage, 3, ["unreadable"]),
    ("a single .npy", single_npy, 3, ["single array"]),
    ("no sigma", lambda t: stats_file(t / "s.npz", sigma=None), 3, ["'sigma'"]),
    ("sigma not square", lambda t: stats_file(t / "s.npz", sigma=np.zeros((D, D + 1))), 5, ["'sigma'", "(64, 65)"]),
    ("NaN in mu", lambda t: stats_file(t / "s.npz", mu=np.full(D, np.nan)), 5, ["'mu'", "NaN"]),
    ("sigma not symmetric", non_symmetric, 5, ["'sigma'", "symmetric"]),
    ("dims differ", lambda t: stats_file(t / "s.npz", dims=D + 1), 5, ["65", "64 dimensions"]),
    ("no such file", lambda t: t / "missing.npz", 3, ["no such file"]),
    ("empty folder", empty_folder, 3, ["no images"]),
    ("unreadable image", broken_image, 3, ["a.png", "unreadable image"]),
    ("float images", lambda t: images_file(t / "i.npz", np.zeros((2, 8, 8, 3), np.float32)), 3,
     ["'images'", "float32", "uint8"]),
    ("four channels", lambda t: images_file(t / "i.npz", np.zeros((2, 8, 8, 4), np.uint8), "arr_0"), 3,
     ["'arr_0'", "(2, 8, 8, 4)"]),
    ("one image", lambda t: images_file(t / "i.npz", np.zeros((1, 8, 8, 3), np.uint8)), 3, ["1 image", "at least 2"]),
    ("too few for --isc", lambda t: images_file(t / "i.npz", np.zeros((4, 8, 8, 3), np.uint8)), 3,
     ["4 images", "10 splits"]),
]


@pytest.mark.parametrize("make,code,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_fid_input_is_refused_clearly(make, code, needles, fid_weights, tmp_path, capsys):
    bad, other, report = make(tmp_path), stats_file(tmp_path / "other.npz"), tmp_path / "report.json"
    before = sorted(tmp_path.rglob("*"))
    isc = ["--isc"] if "isc" in str(needles) or "splits" in str(needles) else []
    assert main(["fid", str(bad), str(other), "--json", str(report), "--dims", str(D), "--quiet",
                 "--weights", str(fid_weights), *isc]) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("inception-bridge: error: "), err
    assert str(bad) in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    assert not MARKER.exists()


def test_statistics_with_nan_are_never_written(tmp_path):
    from fid import Statistics
    from fid.stats import save
    from weights_bridge.errors import WeightsMismatchError

    with pytest.raises(WeightsMismatchError, match="'sigma' contains NaN"):
        save(Statistics(np.zeros(3), np.full((3, 3), np.nan), 5), tmp_path / "s.npz")
    assert list(tmp_path.iterdir()) == []


def test_fid_stats_refuses_an_existing_or_misnamed_output(fid_weights, tmp_path, capsys):
    images = images_file(tmp_path / "i.npz", np.zeros((2, 8, 8, 3), np.uint8))
    (tmp_path / "out.npz").write_bytes(b"keep")
    for out, words in ((tmp_path / "out.npz", "exists"), (tmp_path / "out.txt", ".npz")):
        assert main(["fid-stats", str(images), str(out), "--weights", str(fid_weights), "--quiet"]) == 6
        err = capsys.readouterr().err
        assert words in err and str(out) in err and err.count("\n") == 1
    assert (tmp_path / "out.npz").read_bytes() == b"keep" and not (tmp_path / "out.txt").exists()


def test_statistics_of_other_dims_than_the_images_fail_before_any_feature(tmp_path, capsys):
    images = images_file(tmp_path / "i.npz", np.zeros((2, 8, 8, 3), np.uint8))
    stats = stats_file(tmp_path / "s.npz")
    assert main(["fid", str(images), str(stats), "--dims", "192", "--weights", str(tmp_path / "none.pth")]) == 5
    err = capsys.readouterr().err
    assert f"{stats}: statistics of 64 dimensions, but --dims 192" in err and err.count("\n") == 1


def test_missing_weights_say_which_file_and_where(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    images = images_file(tmp_path / "i.npz", np.zeros((2, 8, 8, 3), np.uint8))
    assert main(["fid", str(images), str(stats_file(tmp_path / "s.npz")), "--dims", "64"]) == 3
    err = capsys.readouterr().err
    assert "no FID Inception weights: pass --weights FILE" in err and err.count("\n") == 1
    for name in ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth"):
        assert str(tmp_path / "torch" / "hub" / "checkpoints" / name) in err
