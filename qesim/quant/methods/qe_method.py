"""Quant Experts driver glue: calls the QE colleague's ``qesim.quant.qe.fit_qe`` on each linear
with its FP calibration inputs (this module does not implement QE itself).

Options (``opts``): ``rank`` (total, default 64, split half shared / half routed as the paper),
``qe_k`` (32), ``qe_n_routed`` (8), ``qe_ablation`` ('full', 'se_only', 're_only',
'se_random_routing', 'se_random_clustering'), ``qe_refine`` (False), ``seed`` (0),
``qe_max_tokens`` (cap on calibration tokens handed to fit_qe; default all), ``qe_shared_rank`` /
``qe_routed_rank`` (override the half/half split of ``rank``; the budget sweeps of
``qesim.eval.pareto`` set them).
"""

from __future__ import annotations

import torch

from qesim.quant.methods import BlockContext, scaled_inputs


def available() -> tuple[bool, str]:
    try:
        from qesim.quant.qe import QEConfig, fit_qe  # noqa: F401
    except ImportError as e:  # the QE module lands separately
        return False, f"qesim.quant.qe is not available ({e})"
    return True, ""


def make_config(opts: dict):
    from qesim.quant.qe import QEConfig

    rank = int(opts.get("rank", 64))
    rs = opts.get("qe_shared_rank")
    rr = opts.get("qe_routed_rank")
    kw = dict(k=int(opts.get("qe_k", 32)), n_routed=int(opts.get("qe_n_routed", 8)),
              shared_rank=int(rank - rank // 2 if rs is None else rs), routed_rank=int(rank // 2 if rr is None else rr),
              ablation=opts.get("qe_ablation", "full"), refine=bool(opts.get("qe_refine", False)),
              seed=int(opts.get("seed", 0)))
    return QEConfig(**kw)


def quantize_block(ctx: BlockContext):
    from qesim.quant.qe import fit_qe

    cfg = make_config(ctx.opts)
    cap = ctx.opts.get("qe_max_tokens")
    out = {}
    for n, lin in ctx.linears.items():
        if n in ctx.in_scales:
            raise ValueError("QE does not combine with unfolded input scales")
        X = scaled_inputs(ctx, n)
        if cap and X.shape[0] > int(cap):
            g = torch.Generator().manual_seed(int(ctx.opts.get("seed", 0)) + ctx.index)
            X = X[torch.randperm(X.shape[0], generator=g)[: int(cap)]]
        b = None if lin.bias is None else lin.bias.detach().float()
        out[n] = fit_qe(lin.weight.detach().float(), b, X, ctx.setting.wq, ctx.setting.a_bits, cfg)
    return out
