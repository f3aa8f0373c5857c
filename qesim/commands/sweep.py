"""``qesim sweep SPACE.yaml --out DIR``: design-space exploration over hardware fields and workloads.

    qesim sweep hw_configs/sweeps/flightllm-dse.yaml --out reports/sweep
    qesim sweep SPACE.yaml --out DIR --workers 2                # local process pool
    qesim sweep SPACE.yaml --out DIR --scheduler tcp://HOST:8786 # a Dask cluster
    qesim sweep SPACE.yaml --out DIR --resume                   # continue a killed sweep

Writes DIR/manifest.json, DIR/parts/*.parquet (one per chunk as it finishes: the durable copy that
--resume keeps) and DIR/sweep.parquet, streamed one row group per chunk in point order (one row per
point: the swept fields, the workload, latency, tokens/s, bound, speedup vs W16A16 on the same
hardware, bytes per memory, utilisation), plus DIR/pareto.csv (latency vs SRAM vs MPE size, per
workload). Before writing anything it costs every workload on one point of every combination of
structural and listed buffer-size values, as `qesim validate SPACE.yaml` does; it says how it split the points into chunks, and the
rate it prints is for the whole command. The space format is documented in ``qesim/dse/space.py`` and in
``hw_configs/sweeps/flightllm-dse.yaml``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_T_IMPORT = time.perf_counter()


def _seconds_since_start() -> float:
    """Wall seconds since this process started (Linux: /proc; else since this module was imported)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _T_IMPORT


def register(sub) -> None:
    p = sub.add_parser("sweep", help="sweep a design space (YAML) into Parquet", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("space", help="space YAML file (top-level 'space:')")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--workers", type=int, default=0, help="local worker processes (default: in-process)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--resume", action="store_true", help="continue the sweep already in --out")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="points per chunk (a Parquet part and a row group; default: about 4 chunks per worker, "
                        "2048..65536 points)")
    p.add_argument("--exact", action="store_true",
                   help="cost every point with estimate_graph instead of the vectorised fast path (slow)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qesim.dse.runner import sweep, _write_csv
    from qesim.dse.space import load_space
    from qesim.errors import InputError

    if args.workers < 0:
        raise InputError(f"--workers must be >= 0 (got {args.workers})")
    if args.workers and args.scheduler:
        raise InputError("--workers and --scheduler are exclusive (Dask workers are set up on the cluster)")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1 (got {args.chunk_size})")
    from qesim.safeio import check_out_dir

    check_out_dir(args.out, create=False)  # nothing is written before the space is checked
    space = load_space(args.space)  # all validation happens before anything is written
    log = None if args.quiet else (lambda m: print(m, file=sys.stderr))
    res = sweep(space, args.out, workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                quiet=args.quiet, chunk_size=args.chunk_size, exact=args.exact, log=log)
    out = Path(args.out)
    _write_csv(res.fronts, out / "pareto.csv")
    if not args.quiet:
        dt = _seconds_since_start()
        tm = res.timings
        print(f"{res.n_points} points in {dt:.2f} s = {res.n_points / max(dt, 1e-9):.0f} points/s for the whole "
              f"command (process start to Pareto; of which the check (a point per structural / buffer-size combination) {tm['check_s']:.2f} s, "
              f"evaluating + writing {tm['run_s']:.2f} s, Parquet writes {tm['write_s']:.2f} s, Pareto "
              f"{tm['pareto_s']:.2f} s) -> {out / 'sweep.parquet'}; {res.fronts.num_rows} on the "
              f"latency/SRAM/MPE Pareto fronts -> {out / 'pareto.csv'}", file=sys.stderr)
    else:
        print(f"wrote {out / 'sweep.parquet'}, {out / 'pareto.csv'}", file=sys.stderr)
    return 0
