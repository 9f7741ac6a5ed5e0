"""``bench`` runs end to end and reports what it promises. No timed assertions: speed targets
are ratios read from the benchmark's output, never pass/fail conditions of the suite."""
import json

import pytest

from conformance.bench import run, table

from .helpers import run_cli


@pytest.mark.slow  # flax's jit at two configs; the CLI case below runs bench in the default tier
def test_bench_rows_and_table():
    rows = run.run("googlenet", batch=1, size=64, frameworks=["torch", "flax"], warmup=0, repeats=1,
                   progress=lambda m: None, compile=False)  # torch.compile's rows: the slow CLI case
    impls = {(r["impl"], r["config"]) for r in rows}
    assert impls == {("torch", "plain"), ("torch", "fast"), ("flax", "jit"), ("flax", "fast")}
    assert all(r["images_per_s"] > 0 and r["ours"] for r in rows)
    text = table.table("googlenet", rows, 1, 64, peak_gflops=100.0)
    assert "images/s" in text and "torch [plain]" in text


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_bench_cli_json_names_impl_and_throughput(tmp_path, compile):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "googlenet", "--frameworks", "torch", "torchvision", "--batch", "1", "--size", "64",
                   "--warmup", "0", "--repeats", "1", "--json", out, *([] if compile else ["--no-compile"]))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["impl"] for r in rows} == {"torch", "torchvision"}
    peer_configs = {r["config"] for r in rows if r["impl"] == "torchvision"}
    assert peer_configs == {"plain", "channels_last"} | ({"channels_last+compile"} if compile else set())
    ours = {r["config"] for r in rows if r["impl"] == "torch"}
    assert ours == {"plain", "fast"} | ({"fast+compile"} if compile else set())
    assert all(isinstance(r["images_per_s"], float) for r in rows)
    assert "vs best peer" in proc.stdout


def test_peak_counts_the_fma_width_each_cpu_really_has():
    # Vendor optimisation manuals: Intel server cores run two 512-bit FMAs a cycle (16 lanes x 2 x 2),
    # AMD Zen 4 (family 0x19) splits each 512-bit FMA into two 256-bit halves, Zen 5 (0x1A) does not.
    assert table.flops_per_cycle("GenuineIntel", 6, {"fma", "avx2", "avx512f"}) == 64
    assert table.flops_per_cycle("AuthenticAMD", 25, {"fma", "avx2", "avx512f"}) == 32
    assert table.flops_per_cycle("AuthenticAMD", 26, {"fma", "avx2", "avx512f"}) == 64
    assert table.flops_per_cycle("GenuineIntel", 6, {"fma", "avx2"}) == 32
    peak, how = table.nominal_peak()
    assert peak > 0 and "flop/cycle" in how
