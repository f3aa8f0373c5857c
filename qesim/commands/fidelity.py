"""``qesim fidelity``: measured vs predicted kernel latencies, in and out of sample.

    qesim fidelity [--measured DIR_OR_CSV] [--hw nvidia-a100-80gb] [--device A100]
                   [--transfer amd-mi210:MI210[:amd-mi210-calibrated]] [--folds 5] [--out reports]

Writes ``OUT/fidelity.md``, ``fidelity.csv`` (one row per kernel: measured, datasheet, in-sample,
k-fold and leave-one-family-out predictions, errors) and ``fidelity.png`` (predicted vs measured,
log-log). Default data: LLMCompass's A100 and MI210 kernels shipped with qesim; the terms are
fitted on the A100 and carried unchanged to the MI210's datasheet config (``--transfer``); a third
field names a calibrated config of that device predicted as configured (``amd-mi210-calibrated``: the
A100 shape with the linear compute efficiency refitted on independent MI210 GEMM micro-benchmarks).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from qesim.errors import InputError


def default_measured() -> Path:
    return Path(__file__).resolve().parents[1] / "fidelity" / "data" / "llmcompass"


def register(sub) -> None:
    p = sub.add_parser("fidelity", help="measured vs predicted kernel latencies (fit, cross-validation, transfer)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measured", default=None, help="measured kernels (CSV or directory; default: the shipped "
                   "LLMCompass A100/MI210 sets)")
    p.add_argument("--hw", default="nvidia-a100-80gb", help="config fitted on --device (default nvidia-a100-80gb)")
    p.add_argument("--device", default="A100", help="device of the measured files to fit (default A100)")
    p.add_argument("--transfer", default="amd-mi210:MI210:amd-mi210-calibrated",
                   help="HW:DEVICE[:CALIBRATED-HW][,...] predicted with the fitted terms on their own datasheet "
                   "config, and CALIBRATED-HW as configured (default amd-mi210:MI210:amd-mi210-calibrated; 'none' "
                   "to skip)")
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold cross-validation (default 5)")
    p.add_argument("--out", default="reports", help="output directory (default reports/)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end LLaMA-2-7B check against published "
                   "measurements (qesim/fidelity/data/published_e2e.csv; writes OUT/fidelity_e2e.csv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qesim.safeio import check_out_dir

    check_out_dir(args.out)
    from qesim.fidelity.kernels import make_predictor
    from qesim.fidelity.validate import run_validation
    from qesim.hw.loader import load_hw
    from qesim.report.fidelity import write_fidelity

    if args.folds < 2:
        raise InputError(f"--folds must be >= 2 (got {args.folds})")
    transfer = []
    if args.transfer and args.transfer.lower() != "none":
        for part in args.transfer.split(","):
            bits = part.split(":")
            if len(bits) not in (2, 3) or not all(bits):
                raise InputError(f"--transfer: {part!r} is not HW:DEVICE[:CALIBRATED-HW] (e.g. amd-mi210:MI210)")
            transfer.append((load_hw(bits[0]), bits[1]) + ((load_hw(bits[2]),) if len(bits) == 3 else ()))
    measured = args.measured or str(default_measured())
    res = run_validation(measured, load_hw(args.hw), args.device, make_predictor, folds=args.folds, transfer=transfer)
    from qesim.progress import command_line

    cmd = command_line("qesim fidelity")  # the command actually run, arguments as given
    e2e = None
    if not args.no_e2e:
        from qesim.fidelity.e2e import e2e_markdown, run_e2e

        from qesim.fidelity.flightllm import flightllm_markdown, flightllm_rows

        e2e = run_e2e()
        res.extra_md = e2e_markdown(e2e) + "\n\n" + flightllm_markdown(flightllm_rows())
    for p in write_fidelity(res, Path(args.out), cmd.strip()):
        print(f"wrote {p}")
    if e2e is not None:
        from qesim.fidelity.e2e import geomean_abs_err

        p = Path(args.out) / "fidelity_e2e.csv"
        e2e.to_csv(p, index=False, float_format="%.6g")
        print(f"wrote {p}")
        print(f"end to end (LLaMA-2-7B batch 1, {len(e2e)} published rows): geomean |error| "
              f"{geomean_abs_err(e2e.stack_err_pct):.1f} % (stack launch assumption), "
              f"{geomean_abs_err(e2e.harness_err_pct):.1f} % (calibrated harness overheads)")
    s = res.summary
    for r in s.itertuples():
        print(f"{r.device:6} {r.op_class:12} n={r.kernels:3}  datasheet {r.datasheet_mean_abs_err_pct:6.1f} %  "
              f"k-fold {r.kfold_mean_abs_err_pct:6.1f} %  transfer {r.transfer_mean_abs_err_pct:6.1f} %  "
              f"calibrated transfer {r.own_mean_abs_err_pct:6.1f} %")
    return 0
