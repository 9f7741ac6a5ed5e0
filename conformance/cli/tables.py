"""The CLI's text tables: the agreement matrix and per-block divergence."""
from __future__ import annotations


def matrix_table(results, impls):
    lines = []
    for task in dict.fromkeys(r.task for r in results):
        worst = {}
        for r in (r for r in results if r.task == task):
            if (r.a, r.b) not in worst or r.max_rel > worst[(r.a, r.b)].max_rel:
                worst[(r.a, r.b)] = r
        names = [i for i in impls if any(i in k for k in worst)]
        lines.append(f"\n{task}: max relative difference over all outputs (x = beyond tolerance)")
        width = max(len(n) for n in names) + 2
        lines.append(" " * width + "".join(n.rjust(width) for n in names))
        for a in names:
            cells = []
            for b in names:
                r = worst.get((a, b)) or worst.get((b, a))
                cells.append("-".rjust(width) if r is None else (f"{r.max_rel:.1e}" + ("" if r.ok else " x")).rjust(width))
            lines.append(a.ljust(width) + "".join(cells))
    return "\n".join(lines)


def blocks_table(blocks):
    lines = []
    for task, per in blocks.items():
        rel = {impl: {b: r for b, _, r in rows} for impl, (rows, _) in per.items()}
        names = list(dict.fromkeys(b for rows in rel.values() for b in rows))
        lines.append(f"\n{task}: per-block max relative difference against torch")
        lines.append("block".ljust(16) + "".join(i.rjust(18) for i in per))
        for name in names:
            cells = [(f"{rel[i][name]:.1e}" if name in rel[i] else "-").rjust(18) for i in per]
            lines.append(name.ljust(16) + "".join(cells))
        for impl, (_, first) in per.items():
            lines.append(f"{impl}: " + (f"first block past tolerance: {first}" if first else "every block within tolerance"))
    return "\n".join(lines)
