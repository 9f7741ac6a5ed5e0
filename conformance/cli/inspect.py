"""``inception-bridge inspect FILE``: what a checkpoint holds, as a table or JSON."""
from __future__ import annotations

import json

from .facts import aligned, fact_rows


def cmd_inspect(a):
    from weights_bridge.inspection import inspect_file, refuse_nonfinite

    report = inspect_file(a.file, a.src_format, a.arch, a.variant)
    if a.json == "-":
        print(json.dumps(report, indent=1))
    else:
        print(format_report(report))
        if a.json:
            from ..agreement.matrix import write_json

            write_json(a.json, report)
    if not a.allow_nonfinite:
        refuse_nonfinite(report)  # after the report, so that it names every such tensor


def format_report(r: dict) -> str:
    dtypes = ", ".join(f"{d} ({n})" for d, n in r["dtypes"].items())
    finite = "yes" if r["finite"] else f"no: NaN or Inf in {len(r['nonfinite'])} tensors: " + ", ".join(r["nonfinite"])
    facts = "from config.json" + (f" (preset {r['preset']})" if r["preset"] else "") if r["facts_recorded"] else \
        f"the variant's own: a {r['format']} file holds tensors only (state others with convert --preset or --mean ...)"
    rows = [
        ("file", r["path"]),
        ("format", r["format"]),
        ("architecture", r["architecture"]),
        ("variant", r["variant"]),
        ("num_classes", str(r["num_classes"])),
        ("aux heads", ", ".join(r["aux_heads"]) or "none"),
        ("tensors", f"{r['tensors']} ({r['bytes'] / 1e6:.1f} MB)"),
        ("parameters", f"{r['parameters']:,} trainable (BN running statistics: {r['bn_statistics']:,} more)"),
        ("dtypes", dtypes),
        ("finite", finite),
        ("facts", facts),
    ]
    return aligned(rows + [(f"  {name}", value) for name, value in fact_rows(r["facts"])])
