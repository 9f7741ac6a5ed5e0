"""``verify --report DIR`` renders: report.md with the verdict, precision and tables, and the PNG
plots it links (pairwise heatmap, per-block divergence), as real images of the expected size."""
from __future__ import annotations

import re

from .helpers import require, run_cli


def test_verify_report_writes_markdown_and_plots(tmp_path):
    require("flax", "matplotlib")
    out = tmp_path / "report"
    proc = run_cli("verify", "googlenet", "--impls", "torch,flax", "--sizes", "96", "--layers", "--report", out,
                   "--workdir", tmp_path / "w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "report.md").read_text()
    assert md.startswith("# googlenet: agreement report") and "**PASS**" in md
    assert "| torch | cpu | float32_matmul_precision=highest" in md and "(float64)" in md
    assert re.search(r"\| torch vs flax \| logits \| \S+ \| \S+ \| yes \|", md)
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert any(name.endswith("-pairs.png") for name in linked) and any(name.endswith("-blocks.png") for name in linked)
    import matplotlib.image

    for name in linked:
        img = matplotlib.image.imread(out / name)  # a decodable PNG, not just a file
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200, (name, img.shape)
        assert img[..., :3].std() > 0.05, f"{name} is blank"
