"""``qesim inference``: whole-request latency (prefill + decode over a growing KV cache).

    qesim inference --model llama2-7b --hw flightllm-u280 --setting W8A8 \\
                    --request 128,512 --request 512,512 [--engine analytical|cycle] [--json]
    qesim inference --report [--out reports/]     # reports/inference.md + inference.csv
    qesim inference --report --models llama2-7b --request 128,512 --out DIR   # a smaller report

Per request ``[s, n]``: TTFT (= the prefill pass), end-to-end latency, decode tokens/s and
end-to-end tokens/s. See :mod:`qesim.perf.inference` for the conventions and the sampling of
decode steps (``--sample-every``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qesim.errors import InputError


#: timed decode steps per request at most (about 8 ms each with the analytical engine); a longer
#: request samples more sparsely (the step latency is piecewise linear in the context, see
#: qesim.perf.inference)
MAX_DECODE_SAMPLES = 64


def register(sub) -> None:
    p = sub.add_parser("inference", help="request latency: TTFT, end-to-end, tokens/s",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model preset name")
    p.add_argument("--hw", default="flightllm-u280", help="hardware preset name or YAML path")
    p.add_argument("--setting", default="W16A16")
    p.add_argument("--method", default="none")
    p.add_argument("--request", action="append", default=None, metavar="S,N",
                   help="prefill tokens, decode steps (repeatable; default 128,512 128,1536 512,512; with --report: "
                        "FlightLLM's six Fig. 11 shapes)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--density", type=float, default=1.0)
    p.add_argument("--kv-bits", type=int, default=None)
    from qesim.perf.engines import engine_names

    p.add_argument("--engine", choices=engine_names(), default="analytical")
    p.add_argument("--sample-every", type=int, default=128, help="decode steps between timed samples (1 = all)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", action="store_true", help="write the full inference report")
    p.add_argument("--out", default="reports", help="with --report: output directory")
    p.add_argument("--models", default=None,
                   help="with --report: comma-separated model presets (default llama2-7b,opt-6.7b,qwen2vl-7b)")
    p.add_argument("--quiet", action="store_true", help="with --report: no progress bar (the paths written are printed)")
    p.set_defaults(func=run)


def _check_requests(reqs, sample_every: int, report: bool = False) -> None:
    """Refuse requests beyond the KV-cache limit; with ``report`` (one sampling interval for every
    request) also those that would time more than MAX_DECODE_SAMPLES decode steps."""
    from qesim.graph.ir import MAX_CONTEXT

    for s, n in reqs:
        if s + n > MAX_CONTEXT:
            raise InputError(f"--request {s},{n}: prefill + decode = {s + n} tokens exceeds the KV-cache limit of "
                             f"{MAX_CONTEXT} (qesim.graph.ir.MAX_CONTEXT)")
        if report and -(-max(n - 1, 1) // sample_every) + 1 > MAX_DECODE_SAMPLES:
            raise InputError(f"--request {s},{n}: with --report and --sample-every {sample_every} it would time more "
                             f"than {MAX_DECODE_SAMPLES} decode steps; raise --sample-every to at least "
                             f"{-(-max(n - 1, 1) // (MAX_DECODE_SAMPLES - 1))}")


def run(args: argparse.Namespace) -> int:
    from qesim.perf.inference import parse_request, request_latency

    if args.sample_every < 1:
        raise InputError("--sample-every must be >= 1")
    if args.report:
        from qesim.report.inference import render_markdown, request_rows
        from qesim.safeio import check_out_dir

        from qesim.progress import bar, command_line
        from qesim.report.inference import HW_NAMES, MODELS, REQUESTS, SETTINGS

        from qesim.graph.presets import preset_names

        models = tuple(m for m in args.models.split(",") if m) if args.models else MODELS
        unknown = sorted(set(models) - set(preset_names()))
        if unknown or not models:
            raise InputError(f"--models: unknown model preset(s): {', '.join(unknown) or repr(args.models)}")
        requests = tuple(parse_request(r) for r in args.request) if args.request else REQUESTS
        _check_requests(requests, args.sample_every, report=bool(args.request))
        out = check_out_dir(args.out)  # before the report's runs, not after them
        pb = bar(len(models) * len(HW_NAMES) * len(SETTINGS) * len(requests), "inference --report", args.quiet,
                 unit="request")
        df = request_rows(models=models, requests=requests, sample_every=args.sample_every, progress=pb,
                          cycle_subset=tuple((m, h) for m in models for h in ("flightllm-u280", "flightllm-vhk158")))
        pb.close()
        df.to_csv(out / "inference.csv", index=False)
        (out / "inference.md").write_text(render_markdown(
            df, args.sample_every, command_line(f"qesim inference --report --out {args.out}")))
        print(f"{len(df)} requests; wrote {out / 'inference.md'}, {out / 'inference.csv'}")
        return 0
    if not args.model:
        raise InputError("--model is required (or --report)")
    if not 0 < args.density <= 1:
        raise InputError(f"--density must be in (0, 1] (got {args.density})")
    if args.batch < 1:
        raise InputError("--batch must be >= 1")
    from qesim.hw.loader import load_hw

    hw = load_hw(args.hw)
    reqs = [parse_request(r) for r in (args.request or ["128,512", "128,1536", "512,512"])]
    _check_requests(reqs, args.sample_every)
    res = []
    for s, n in reqs:
        # work bounded by the input: at most MAX_DECODE_SAMPLES timed decode steps per request
        k = max(args.sample_every, -(-max(n - 1, 1) // (MAX_DECODE_SAMPLES - 1)))
        if k != args.sample_every:
            print(f"note: request [{s}, {n}]: decode steps sampled every {k} (not {args.sample_every}) to time at "
                  f"most {MAX_DECODE_SAMPLES} steps", file=sys.stderr)
        res.append(request_latency(args.model, hw, setting=args.setting, method=args.method, prefill=s, decode=n,
                                   batch=args.batch, density=args.density, kv_bits=args.kv_bits, engine=args.engine,
                                   sample_every=k))
    if args.json:
        from qesim.safeio import dumps_finite

        print(dumps_finite({"requests": [r.to_dict() for r in res]}))
        return 0
    r0 = res[0]
    print(f"{args.model} {r0.setting} method={r0.method} batch {args.batch} on {hw.name} [{args.engine}]")
    hdr = f"{'[s, n]':<12} {'TTFT ms':>9} {'e2e s':>8} {'decode tok/s':>13} {'e2e tok/s':>10}  bound (prefill/decode)"
    print(hdr)
    print("-" * len(hdr))
    for r in res:
        print(f"{f'[{r.prefill}, {r.decode}]':<12} {r.ttft_s * 1e3:>9.2f} {r.e2e_s:>8.3f} {r.decode_tokens_per_s:>13.2f} "
              f"{r.e2e_tokens_per_s:>10.2f}  {r.prefill_bound}/{r.decode_bound}")
    return 0
