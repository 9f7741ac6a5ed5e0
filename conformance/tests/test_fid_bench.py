"""The FID benchmark and the FID agreement run end to end and report what they promise. No timed
assertions: speed targets are ratios read from ``bench --variant fid``'s output."""
import json

import numpy as np
import pytest

from conformance.bench import fid_agreement, fid_speed

from .helpers import own_process, require, run_cli, seeded

FID_STATS_MEMORY = int(3.25 * 2**30)


def test_fid_bench_rows_and_table():
    require("pytorch_fid", "torch_fidelity")
    rows = fid_speed.run(batch=1, size=32, frameworks=["torch", "pytorch-fid", "torch-fidelity"], warmup=0,
                         repeats=1, compile=False)
    assert {(r["impl"], r["config"]) for r in rows} == {
        ("torch", "fast, tf1 pipeline"), ("pytorch-fid", "default"), ("pytorch-fid", "channels_last"),
        ("torch-fidelity", "default"), ("torch-fidelity", "channels_last")}
    assert all(r["images_per_s"] > 0 and r["ours"] == (r["impl"] == "torch") for r in rows)
    text = fid_speed.table(rows, 1, 32).splitlines()
    assert text[0].startswith("FID Inception features (pool3), batch 1, uint8 32x32")
    assert text[1].split()[-9:] == ["vs", "pytorch-fid", "default", "vs", "pytorch-fid", "best", "vs",
                                    "torch-fidelity", "best"]
    assert len(text) == 2 + len(rows) and all(line.rstrip().endswith("x") for line in text[2:])
    ours = next(r for r in rows if r["ours"])
    assert ours["vs_pytorch-fid_default"] == pytest.approx(
        ours["images_per_s"] / next(r["images_per_s"] for r in rows if r["config"] == "default"
                                    and r["impl"] == "pytorch-fid"))


def test_fid_bench_is_the_fid_inception_only():
    proc = run_cli("bench", "googlenet", "--variant", "fid")
    assert proc.returncode == 2 and "inception_v3" in proc.stderr and "Traceback" not in proc.stderr


def test_procedural_sets_are_deterministic_and_differ():
    a, b = fid_agreement.image_sets(16)
    a2, b2 = fid_agreement.image_sets(16)
    assert a.dtype == np.uint8 and a.shape == (16, *fid_agreement.SIZE, 3)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert abs(float(a.std()) - float(b.std())) > 1 or abs(float(a.mean()) - float(b.mean())) > 1


@pytest.mark.slow
def test_fid_agrees_across_frameworks(tmp_path, pool):
    """FID (tf1, pool_64: 96 images a side keep the 64 x 64 covariances full rank) from torch,
    flax and keras features, each in its own process: within 1e-5 of each other, and far from 0."""
    require("jax", "flax", "keras", "tensorflow")
    weights = seeded(tmp_path / "fid.pth", "inception_v3", variant="fid", aux_logits=False)
    # its fid-stats processes, one at a time, are not the pool's: Keras-on-TensorFlow's reach 2.8 GiB
    # (peak PSS, 2026-12-04; torch's 1.2-1.4, flax's 1.8-1.9); the other test process's requests run beside
    with own_process(pool, FID_STATS_MEMORY):
        result = fid_agreement.run(weights, tmp_path / "work", n=96, dims=64, modes=["tf1"], progress=lambda m: None)
    fids = {k.split()[0]: v for k, v in result["fid"].items()}
    assert set(fids) == {"torch", "flax", "keras"}, json.dumps(result)
    assert min(fids.values()) > 1.0, fids
    for f in fids:
        for g in fids:
            assert abs(fids[f] - fids[g]) / fids[g] <= 1e-5, (f, g, fids)
