"""LQER as L2QER (Zhang et al.; ChengZhang-98/lqer ``lqer_act.py``), quantizer-facts §6.

Wq = Q(W); E = W - Wq. Activation scale: per calibration mini-batch a_b[j] = mean_t |x_j|;
s = elementwise running max over mini-batches, clamp(1e-4), s /= sqrt(min(s) max(s)).
SVD of diag(s) E^T truncated to rank r (default 64 = the QE total rank): A = diag(s)^-1 U_r,
B = Σ_r V_r^T (``qesim.quant.lowrank.scaled_svd``). Forward: Q_a(x) Wq^T + (Q_a(x) A) B, the
adapter consuming the same quantized activation, A/B kept in high precision (the reference's
INT-variant "passthrough"). ``opts['rank']`` sets r.
"""

from __future__ import annotations

import torch

from qesim.quant.lowrank import scaled_svd
from qesim.quant.methods import BlockContext, make_qlinear, scaled_inputs


def lqer_scale(X: torch.Tensor, batch_tokens: list[int]) -> torch.Tensor:
    parts = torch.split(X, batch_tokens, 0) if sum(batch_tokens) == X.shape[0] else [X]
    a = torch.stack([p.abs().mean(0) for p in parts if p.shape[0] > 0]).amax(0).float()
    a = a.clamp(min=1e-4)
    return a / torch.sqrt(a.min() * a.max())


def quantize_block(ctx: BlockContext):
    rank = int(ctx.opts.get("rank", 64))
    out = {}
    for n, lin in ctx.linears.items():
        W = lin.weight.detach().float()
        Wq = ctx.setting.wq(W)
        s = lqer_scale(scaled_inputs(ctx, n), ctx.batch_tokens)
        A, B = scaled_svd(W - Wq, s, rank)
        out[n] = make_qlinear(ctx, n, W=Wq, A=A, B=B, info={"method": "lqer", "rank": int(A.shape[1])})
    return out
