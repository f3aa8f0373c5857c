"""``qesim moe``: mixture-of-experts helpers.

    qesim moe speedup [--out reports] [--hw qe-paper-npu --hw flightllm-u280]
        Table-8-style speedups over fp16 for the expert shapes of kimi-vl-a3b and qwen3-vl-30b-a3b
        (writes moe_speedup.md / moe_speedup.csv).
    qesim moe veq [--out reports]
        VEQ-ME / VEQ-MA vs AWQ / GPTQ on the synthetic MoE layer (writes veq.md / veq.csv).
    qesim moe touched --experts 64 --top-k 6 --tokens 1 8 128 [--trials 2000]
        expected distinct experts touched by s tokens (model) vs a simulation of random top-k routing.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("moe", help="MoE speedup report / touched-experts check", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="moe_cmd", metavar="SUB")
    s.required = True
    a = s.add_parser("speedup", help="write reports/moe_speedup.md/csv")
    a.add_argument("--out", default="reports")
    a.add_argument("--hw", action="append", default=None, help="hardware preset (repeatable)")
    a.set_defaults(func=_speedup)
    c = s.add_parser("veq", help="VEQ-ME / VEQ-MA on the synthetic MoE layer (writes veq.md/csv)")
    c.add_argument("--out", default="reports")
    c.set_defaults(func=_veq)
    b = s.add_parser("touched", help="expected vs simulated distinct experts")
    b.add_argument("--experts", type=int, default=64)
    b.add_argument("--top-k", type=int, default=6)
    b.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 8, 32, 128])
    b.add_argument("--trials", type=int, default=2000)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=_touched)


def _speedup(args) -> int:
    from qesim.safeio import check_out_dir

    check_out_dir(args.out)
    from qesim.report.moe import write_moe_speedup_report

    from qesim.progress import command_line

    paths = write_moe_speedup_report(args.out, tuple(args.hw or ("qe-paper-npu", "flightllm-u280")),
                                     command=command_line(f"qesim moe speedup --out {args.out}"))
    for p in paths:
        print(f"wrote {p}")
    return 0


def _veq(args) -> int:
    from qesim.safeio import check_out_dir

    check_out_dir(args.out)  # before the experiment, not after it
    import torch

    from qesim.report.veq import write_veq_report

    torch.set_num_threads(2)
    from qesim.progress import command_line

    for p in write_veq_report(args.out, command=command_line(f"qesim moe veq --out {args.out}")):
        print(f"wrote {p}")
    return 0


def simulate_touched(experts: int, top_k: int, tokens: int, trials: int, seed: int = 0, freqs=None) -> float:
    """Mean distinct experts over ``trials`` batches of ``tokens`` tokens, each picking ``top_k``
    distinct experts uniformly (or, with ``freqs``, by Gumbel-top-k sampling without replacement)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tot = 0
    logp = None if freqs is None else np.log(np.clip(np.asarray(freqs, float), 1e-30, None))
    for _ in range(trials):
        if logp is None:
            keys = rng.random((tokens, experts))
        else:
            keys = logp[None, :] + rng.gumbel(size=(tokens, experts))
        pick = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k]
        tot += len(np.unique(pick))
    return tot / trials


#: work bound of `moe touched` (trials x tokens x experts random keys): about a second
MAX_TOUCHED_WORK = 5 * 10**7


def _touched(args) -> int:
    from qesim.errors import InputError
    from qesim.perf.model import expected_touched

    if not 1 <= args.experts <= 2**16:
        raise InputError(f"--experts must be in 1..65536 (got {args.experts})")
    if not 1 <= args.top_k <= args.experts:
        raise InputError(f"--top-k must be in 1..--experts = 1..{args.experts} (got {args.top_k})")
    bad = [s for s in args.tokens if s < 1]
    if bad:
        raise InputError(f"--tokens must be >= 1 (got {bad[0]})")
    if args.trials < 1:
        raise InputError(f"--trials must be >= 1 (got {args.trials})")
    work = args.trials * max(args.tokens) * args.experts
    if work > MAX_TOUCHED_WORK:
        raise InputError(f"--trials x --tokens x --experts = {work:.3g} random draws exceeds the limit of "
                         f"{MAX_TOUCHED_WORK:.0e}; lower --trials")

    print(f"{'tokens':>6} {'model':>9} {'simulated':>9}")
    for s in args.tokens:
        e = expected_touched(args.experts, s, args.top_k)
        m = simulate_touched(args.experts, args.top_k, s, args.trials, args.seed)
        print(f"{s:>6} {e:>9.3f} {m:>9.3f}")
    return 0
