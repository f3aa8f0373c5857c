"""``qesim calibrate``: fit a hardware config's fidelity terms to measured kernel latencies.

    qesim calibrate HW.yaml --measured DIR_OR_CSV --out HW-calibrated.yaml [--device A100]
                    [--classes linear,softmax] [--min-points-per-param 3]
    qesim calibrate HW.yaml --terms-from OTHER-calibrated.yaml --out HW-transfer.yaml
                    [--measured DIR_OR_CSV --refit compute_efficiency,floor_us]

Reads LLMCompass's real-hardware CSVs as they are (``matmul_A100.csv``, ``softmax_A100.csv``, ...)
or a headed CSV ``kernel,M,N,K,latency_us``; fits each op class's few parameters (fixed cost,
host floor, compute and memory efficiency, K roll-off) by log-space bounded least squares
through the cost model; writes the YAML with comments recording the data, the fit and its
residuals. Out-of-sample errors: ``qesim fidelity``. Needs scipy (``pip install -e '.[quant]'``).
"""

from __future__ import annotations

import argparse
import sys

from qesim.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a hardware config's fidelity terms to measured kernels",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hw", help="hardware YAML (or preset name) to calibrate")
    p.add_argument("--measured", default=None, help="measured kernels: a CSV file or a directory of them")
    p.add_argument("--terms-from", default=None, help="instead of fitting: copy the fitted op-class terms of this "
                   "calibrated config (the fitted shape carried to HW's datasheet numbers)")
    p.add_argument("--out", required=True, help="calibrated YAML to write")
    p.add_argument("--device", default=None, help="device name in the measured files (e.g. A100) if they hold several")
    p.add_argument("--classes", default=None, help="op classes to fit (default: every class in the data)")
    p.add_argument("--refit", default=None, help="with --terms-from and --measured: after the transfer, fit only "
                   "these op-class fields (e.g. compute_efficiency,fixed_us,floor_us) to HW's own measured kernels")
    p.add_argument("--min-points-per-param", type=int, default=3,
                   help="refuse to fit a class with fewer measured kernels per parameter (default 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qesim.safeio import check_out_file

    check_out_file(args.out)
    from qesim.fidelity.calibrate import run_calibrate
    from qesim.fidelity.kernels import make_predictor
    from qesim.hw.config import OP_CLASSES

    classes = None
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
        bad = [c for c in classes if c not in OP_CLASSES]
        if bad:
            raise InputError(f"--classes: unknown op class(es) {', '.join(bad)}; known: {', '.join(OP_CLASSES)}")
    if args.min_points_per_param < 1:
        raise InputError(f"--min-points-per-param must be >= 1 (got {args.min_points_per_param})")
    cmd = "qesim calibrate " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["calibrate"] else "qesim calibrate"
    refit = [f.strip() for f in args.refit.split(",") if f.strip()] if args.refit else None
    if args.terms_from is None and (args.measured is None or refit):
        raise InputError("calibrate: give --measured (fit), or --terms-from (transfer) [with --measured and --refit]")
    if args.terms_from is not None and (args.measured is None) != (refit is None):
        raise InputError("calibrate: --terms-from with --measured needs --refit FIELD,... (and --refit needs --measured)")
    if args.terms_from:
        from qesim.fidelity.calibrate import transfer_terms

        blocks = transfer_terms(args.hw, args.terms_from, args.out, command=cmd, measured=args.measured, refit=refit,
                                device=args.device, make_predictor=make_predictor,
                                min_points_per_param=args.min_points_per_param)
        print(f"transferred terms of {', '.join(blocks)} from {args.terms_from}; wrote {args.out}")
        return 0
    cal = run_calibrate(args.hw, args.measured, args.out, make_predictor, device=args.device, classes=classes,
                        min_points_per_param=args.min_points_per_param, command=cmd)
    for cls, r in cal.fits.items():
        e = r.abs_err * 100
        vals = ", ".join(f"{k.rsplit('.', 1)[1]}={v:.4g}" for k, v in r.values.items())
        print(f"{cls}: {r.n_points} kernels, |error| mean {e.mean():.1f} % max {e.max():.1f} % (in sample); {vals}")
        for n in r.notes:
            print(f"  {n}")
    print(f"wrote {args.out}")
    return 0
