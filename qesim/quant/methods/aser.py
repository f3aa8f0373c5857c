"""ASER-style whitened SVD (Zhao et al., AAAI'25; no public code), quantizer-facts §7.

Wq = Q(W); E = W - Wq; G = X^T X (float64) damped by ``opts['aser_damp']`` (default 0.01) x
mean(diag G); G = L L^T; SVD(L^T E^T) truncated to rank r (default 64) gives A = L^-T U_r,
B = Σ_r V_r^T, minimising ||X E^T - X A B||_F (``qesim.quant.lowrank.whitened_svd``, which falls
back to more damping / eigen-shift / diagonal on Cholesky failure, logged).
Only ASER's error-reconstruction part is implemented; its activation-smoothing / outlier
extraction step is not (its exact rule is unverified, see quantizer-facts §7).
"""

from __future__ import annotations

from qesim.quant.lowrank import whitened_svd
from qesim.quant.methods import BlockContext, make_qlinear, scaled_inputs


def quantize_block(ctx: BlockContext):
    rank = int(ctx.opts.get("rank", 64))
    damp = float(ctx.opts.get("aser_damp", 0.01))
    out = {}
    for n, lin in ctx.linears.items():
        W = lin.weight.detach().float()
        Wq = ctx.setting.wq(W)
        A, B = whitened_svd(W - Wq, scaled_inputs(ctx, n), rank, damp=damp)
        out[n] = make_qlinear(ctx, n, W=Wq, A=A, B=B, info={"method": "aser", "rank": int(A.shape[1])})
    return out
