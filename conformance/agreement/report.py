"""``verify --report DIR``: a Markdown summary and PNG plots (pairwise heatmap per task,
per-block divergence curves) for people and CI artifacts. Needs matplotlib."""
from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(task, results, impls, path):
    import numpy as np

    plt = _pyplot()
    names = [i for i in impls if any(r.a == i or r.b == i for r in results if r.task == task)]
    grid = np.full((len(names), len(names)), np.nan)
    for r in results:
        if r.task == task and r.a in names and r.b in names:
            i, j = names.index(r.a), names.index(r.b)
            worst = np.nanmax([grid[i, j], r.max_rel]) if not np.isnan(grid[i, j]) else r.max_rel
            grid[i, j] = grid[j, i] = worst
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.0 * len(names) + 1.5))
    shown = np.log10(np.where(grid > 0, grid, 1e-12))
    im = ax.imshow(shown, cmap="viridis", vmin=-9, vmax=-3)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0e}", ha="center", va="center", color="w", fontsize=8)
    fig.colorbar(im, ax=ax, label="log10 max relative difference")
    ax.set_title(f"{task}: pairwise agreement")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def block_curves(task, per_impl, tolerance, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    names = []
    for impl, (rows, _) in per_impl.items():
        names = names if len(names) >= len(rows) else [b for b, _, _ in rows]
        ax.semilogy(range(len(rows)), [max(r, 1e-12) for _, _, r in rows], marker="o", ms=3, label=impl)
    ax.axhline(tolerance, color="red", ls="--", lw=1, label=f"block tolerance {tolerance:g}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("max relative difference vs torch")
    ax.set_title(f"{task}: per-block divergence")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(directory, arch, results, errors, precision, blocks, impls) -> Path:
    from ..compare.tolerances import TOLERANCES

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r.task for r in results))
    ok = not errors and all(r.ok for r in results)
    lines = [f"# {arch}: agreement report", "", f"**{'PASS' if ok else 'FAIL'}** — {len(results)} comparisons, "
             f"{sum(not r.ok for r in results)} beyond tolerance, {len(errors)} workers failed.", "",
             "Tolerances: " + "; ".join(f"{k} ({d}): abs {v['abs']:g}, rel {v['rel']:g}" for (d, k), v in TOLERANCES.items()), "",
             "| implementation | device | precision |", "|---|---|---|"]
    for impl, info in precision.items():
        lines.append(f"| {impl} | {info.get('device', '?')} | "
                     + ", ".join(f"{k}={v}" for k, v in info.items() if k != "device") + " |")
    for task in tasks:
        png = f"{task}-pairs.png"
        heatmap(task, results, impls, out / png)
        lines += ["", f"## {task}", "", f"![pairwise agreement]({png})", "",
                  "| pair | output | max abs | max rel | ok |", "|---|---|---|---|---|"]
        for r in results:
            if r.task == task:
                lines.append(f"| {r.a} vs {r.b} | {r.quantity} | {r.max_abs:.2e} | {r.max_rel:.2e} | "
                             f"{'yes' if r.ok else '**no**'} |")
        if task in (blocks or {}):
            png = f"{task}-blocks.png"
            block_curves(task, blocks[task], TOLERANCES[("float32", "block")]["rel"], out / png)
            lines += ["", f"![per-block divergence]({png})", ""]
            for impl, (_, first) in blocks[task].items():
                lines.append(f"- {impl}: " + (f"first block past tolerance: **{first}**" if first else "every block within tolerance"))
    for impl, err in errors.items():
        lines += ["", f"**{impl} failed**:", "```", str(err)[-2000:], "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "report.md"
