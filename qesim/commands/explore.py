"""``qesim explore``: a local web app over the cost model (http://127.0.0.1:PORT/, localhost only).

    qesim explore [--port 8050] [--sweep reports/sweep/sweep.parquet] [--model llama2-7b] [--hw flightllm-u280]

Knobs: model, hardware preset, setting, method, stage, lengths; sliders for HBM bandwidth, MAC
scale, buffer sizes and frequency. Shows latency, tokens/s, energy per token, power, area, die
cost, the bound, the per-op table, the roofline and the energy breakdown; the second tab loads a
sweep Parquet and shows its Pareto front with filters. Needs the ``[explore]`` extra (dash).
"""

from __future__ import annotations

import argparse

from qesim.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("explore", help="local web app over the cost model (localhost)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8050, help="port on 127.0.0.1 (default 8050)")
    p.add_argument("--sweep", default=None, help="sweep Parquet (or its directory) to open in the sweep tab")
    p.add_argument("--model", default="llama2-7b")
    p.add_argument("--hw", default="flightllm-u280")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be in 1..65535 (got {args.port})")
    try:
        import dash  # noqa: F401
    except ModuleNotFoundError:
        raise InputError("qesim explore needs dash: pip install -e '.[explore]'") from None
    from qesim.graph.presets import preset_names as models
    from qesim.hw.loader import load_hw

    load_hw(args.hw)  # bad name: one clear line
    if args.model not in models():
        raise InputError(f"unknown model {args.model!r}; known: {', '.join(models())}")
    from qesim.explore.app import serve

    print(f"qesim explore on http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
    serve(port=args.port, sweep=args.sweep, model=args.model, hw=args.hw)
    return 0
