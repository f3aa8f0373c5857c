"""``qesim report --out reports/ [--sweep DIR]``: one static HTML page gathering the reports.

    qesim sweep hw_configs/sweeps/flightllm-dse.yaml --out reports/sweep
    qesim report --out reports/ --sweep reports/sweep

Writes OUT/index.html and its figures in OUT/index_files/: QE Table 8 (re-run), decode speedups,
the quantizers' accuracy vs speed (if OUT/accuracy.csv exists), the sweep (Pareto fronts and
plots), roofline / heatmap / breakdown figures, and the inference and engine reports found in
OUT. Sections whose inputs are missing are skipped with a note. Open the page in any browser;
it needs no server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("report", help="write the static HTML report (tables + PNGs)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports", help="output directory (default reports/)")
    p.add_argument("--sweep", default=None,
                   help="sweep directory from `qesim sweep` (default: OUT/sweep if it holds one)")
    p.add_argument("--accuracy", default=None, help="accuracy CSV (default OUT/accuracy.csv)")
    p.add_argument("--table8-hw", default="qe-paper-npu", help="config for the Table 8 section")
    p.add_argument("--hw", default="flightllm-u280", help="config for the per-op and quantizer-speed sections")
    p.add_argument("--model", default="qwen2vl-7b", help="model preset for the per-op sections")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qesim.errors import InputError
    from qesim.graph.presets import get_spec
    from qesim.hw.loader import load_hw
    from qesim.report.html import build_report

    from qesim.safeio import check_out_dir

    out = check_out_dir(args.out)
    load_hw(args.table8_hw)
    load_hw(args.hw)
    get_spec(args.model)
    sweep = args.sweep
    if sweep is not None and not (Path(sweep) / "sweep.parquet").exists():
        raise InputError(f"--sweep {sweep}: no sweep.parquet there (run `qesim sweep SPACE.yaml --out {sweep}`)")
    if sweep is None and (out / "sweep" / "sweep.parquet").exists():
        sweep = out / "sweep"
    if args.accuracy is not None and not Path(args.accuracy).exists():
        raise InputError(f"--accuracy {args.accuracy}: file not found")
    path = build_report(out, sweep, table8_hw=args.table8_hw, dse_hw=args.hw, model=args.model,
                        accuracy_csv=args.accuracy)
    print(f"wrote {path}", file=sys.stderr)  # also under --quiet: it silences progress only
    return 0
