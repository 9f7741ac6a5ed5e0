"""``inception-bridge fid`` and ``fid-stats`` end to end, against pytorch-fid's own model and
functions on the same images and files; their bad inputs are in test_hostile_fid.py."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conformance.cli import main
from conformance.frameworks.torch_nn.fid_peers import from_hub_cache
from fid.stats import save

from .helpers import require
from .test_fid_metric import features, statistics_of


def images(n, seed, size=(37, 45)):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size[1])[None, :, None]
    x = rng.integers(0, 256, (n, *size, 3)) * 0.5 + ramp * rng.uniform(0.2, 1, (n, 1, 1, 3))
    x[:, :2, :2] = [0, 255, 0]  # both ends of uint8 present
    return np.clip(x, 0, 255).astype(np.uint8)


def pytorch_fid_pool64(weights, x):
    """pytorch-fid's features as its fid_score computes them: its InceptionV3 (block 0: 64 dims)
    with its own resize and normalisation, on ToTensor()'s [0, 1] floats, then (as
    ``get_activations`` does for maps) an adaptive average pool to 1 x 1."""
    require("pytorch_fid")
    from pytorch_fid.inception import InceptionV3

    model = from_hub_cache("pytorch-fid", weights, lambda: InceptionV3([0], resize_input=True, normalize_input=True))
    with torch.inference_mode():
        out = model.eval()(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)[0]
        out = torch.nn.functional.adaptive_avg_pool2d(out, (1, 1))
    return out.squeeze(-1).squeeze(-1).double().numpy()


def test_fid_stats_equal_pytorch_fids_features(fid_weights, tmp_path, capsys):
    x = images(6, 0)
    np.savez(tmp_path / "imgs.npz", images=x)
    out = tmp_path / "stats.npz"
    code = main(["fid-stats", str(tmp_path / "imgs.npz"), str(out), "--mode", "pytorch-fid", "--dims", "64",
                 "--weights", str(fid_weights), "--batch-size", "4"])
    assert code == 0, capsys.readouterr().err
    expected = statistics_of(pytorch_fid_pool64(fid_weights, x))
    with np.load(out, allow_pickle=False) as f:
        mu, sigma, count = f["mu"], f["sigma"], int(f["count"])
    assert count == 6 and mu.shape == (64,) and sigma.shape == (64, 64)
    assert np.abs(mu - expected.mu).max() <= 1e-5 * np.abs(expected.mu).max()
    assert np.abs(sigma - expected.sigma).max() <= 1e-5 * np.abs(expected.sigma).max()
    err = capsys.readouterr().err
    assert "images: 4/6" in err and "images: 6/6" in err  # progress, a line per step off a terminal


@pytest.mark.filterwarnings("ignore:The `disp` argument:DeprecationWarning")  # inside pytorch-fid
def test_fid_of_statistics_files_equals_pytorch_fid(tmp_path, capsys):
    require("pytorch_fid")
    from pytorch_fid.fid_score import calculate_frechet_distance

    a, b = statistics_of(features(300, 32, 5)), statistics_of(features(300, 32, 6, shift=0.5))
    for name, s in (("a", a), ("b", b)):
        np.savez_compressed(tmp_path / f"{name}.npz", mu=s.mu, sigma=s.sigma)  # pytorch-fid's save_fid_stats
    code = main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--json", str(tmp_path / "r.json")])
    assert code == 0
    expected = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["fid"] == pytest.approx(expected, rel=1e-6) and expected > 1
    assert capsys.readouterr().out.strip() == f"FID: {report['fid']:.6f}"
    assert report["sqrtm"]["residual"] < 1e-10 and "eigh" in report["sqrtm"]["method"]
    assert (report["mode"], report["framework"], report["dims"]) == ("tf1", "torch", 2048)
    assert report["images"] == {"a": None, "b": None}  # pytorch-fid's files do not say
    assert report["inception_score"] is None


def test_folder_against_statistics_with_inception_score(fid_weights, tmp_path, capsys):
    """A folder of PNG and JPEG files of mixed sizes against precomputed statistics, the common case."""
    folder = tmp_path / "fake"
    folder.mkdir()
    for i, image in enumerate(images(10, 1)):
        Image.fromarray(image).save(folder / f"{i:02d}.{'png' if i % 3 else 'jpg'}")
    Image.fromarray(images(1, 2, size=(20, 31))[0]).save(folder / "99.png")
    stats, report = tmp_path / "real_stats.npz", tmp_path / "r.json"
    save(statistics_of(features(100, 64, 7)), stats)
    common = ["--dims", "64", "--weights", str(fid_weights), "--quiet"]
    assert main(["fid", str(folder), str(stats), "--isc", "--json", str(report), *common]) == 0
    r = json.loads(report.read_text())
    assert r["images"] == {"a": 11, "b": 100} and r["fid"] > 0
    assert set(r["inception_score"]) == {"a"} and r["inception_score"]["a"]["mean"] >= 1.0
    out = capsys.readouterr()
    assert "Inception Score (a):" in out.out and out.err == ""  # --quiet: no progress
