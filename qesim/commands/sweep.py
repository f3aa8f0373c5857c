"""``qesim sweep SPACE.yaml --out DIR``: design-space exploration over hardware fields and workloads.

    qesim sweep hw_configs/sweeps/flightllm-dse.yaml --out reports/sweep
    qesim sweep SPACE.yaml --out DIR --workers 2                # local process pool
    qesim sweep SPACE.yaml --out DIR --scheduler tcp://HOST:8786 # a Dask cluster
    qesim sweep SPACE.yaml --out DIR --resume                   # continue a killed sweep

Writes DIR/manifest.json, DIR/parts/*.parquet (as it goes) and DIR/sweep.parquet (one row per
point: the swept fields, the workload, latency, tokens/s, bound, speedup vs W16A16 on the same
hardware, bytes per memory, utilisation), plus DIR/pareto.csv (latency vs SRAM vs MPE size, per
workload). The space format is documented in ``qesim/dse/space.py`` and in
``hw_configs/sweeps/flightllm-dse.yaml``.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(sub) -> None:
    p = sub.add_parser("sweep", help="sweep a design space (YAML) into Parquet", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", help="space YAML file (top-level 'space:')")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--workers", type=int, default=0, help="local worker processes (default: in-process)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--resume", action="store_true", help="continue the sweep already in --out")
    p.add_argument("--chunk-size", type=int, default=None, help="points per Parquet part (default: automatic)")
    p.add_argument("--exact", action="store_true",
                   help="cost every point with estimate_graph instead of the vectorised fast path (slow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qesim.dse.pareto import pareto_front
    from qesim.dse.runner import run_sweep
    from qesim.dse.space import load_space
    from qesim.errors import InputError

    if args.workers < 0:
        raise InputError(f"--workers must be >= 0 (got {args.workers})")
    if args.workers and args.scheduler:
        raise InputError("--workers and --scheduler are exclusive (Dask workers are set up on the cluster)")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1 (got {args.chunk_size})")
    space = load_space(args.space)  # all validation happens before anything is written
    t0 = time.perf_counter()
    df = run_sweep(space, args.out, workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                   quiet=args.quiet, chunk_size=args.chunk_size, exact=args.exact)
    dt = time.perf_counter() - t0
    from pathlib import Path

    from qesim.dse.space import WORKLOAD_FIELDS

    front = pareto_front(df, {"latency_s": "min", "sram_bytes": "min", "mpe_macs_per_cycle": "min"},
                         by=list(WORKLOAD_FIELDS))
    front.to_csv(Path(args.out) / "pareto.csv", index=False)
    if not args.quiet:
        print(f"{len(df)} points in {dt:.2f} s ({len(df) / max(dt, 1e-9):.0f} points/s) -> "
              f"{Path(args.out) / 'sweep.parquet'}; {len(front)} on the latency/SRAM/MPE Pareto fronts "
              f"-> {Path(args.out) / 'pareto.csv'}", file=sys.stderr)
    return 0
