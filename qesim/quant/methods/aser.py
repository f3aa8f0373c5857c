"""ASER (Zhao et al., AAAI'25, arXiv 2411.07762; no public code): activation smoothing + error
reconstruction, quantizer-facts §7.

1. Activation smoothing / outlier extraction (``opts['aser_smooth']``, default True): the ``k``
   (``opts['aser_k']``, default 32) channels with the largest static importance
   ``mean_t|x_j| * mean_o|W_oj|`` over the calibration tokens are the outlier channels ``C``;
   ``omega_C = x_C / min(x_C)`` (``x = mean_t |x|``), 1 elsewhere; the layer computes
   ``Q_a(x / omega) Wq'^T`` with ``Wq' = Q(W diag(omega) * (1 - 1_C))`` — the outlier columns are
   extracted from the quantized weight and left to the low-rank term (hence ``k <= r``: a rank-r
   term cannot carry more than r extracted columns; at r = 64 this is the QE paper's k = 32).
2. Error reconstruction: ``E = W diag(omega) - Wq'``; whitened SVD w.r.t. ``X / omega``
   (``G = X^T X`` float64 damped by ``opts['aser_damp']`` (0.01) x mean diag) truncated to rank r
   (default 64): ``A``, ``B`` minimise ``||X' E^T - X' A B||_F``
   (``qesim.quant.lowrank.whitened_svd``, with logged fallbacks on Cholesky failure).

ASER's paper text could not be read here (only its abstract): the smoothing step is the shared-
expert procedure of the QE paper (its Alg. 3 "follows the general procedure described in
[ASER]"), with ASER's static outlier selection instead of QE's per-token frequency ranking.
``aser_smooth=False`` gives the error-reconstruction-only variant qesim used before.
Deployed cost of the smoothing: one per-channel scaling of each linear's input before its
activation quantizer (it differs between linears that share an input, so it does not fold into
the RMSNorm) — the exported graph charges it like QE's omega.
"""

from __future__ import annotations

import torch

from qesim.quant.lowrank import whitened_svd
from qesim.quant.methods import BlockContext, make_qlinear, scaled_inputs


def outlier_channels(W: torch.Tensor, X: torch.Tensor, k: int) -> torch.Tensor:
    """Static top-``k`` channels by ``mean_t|x| * mean_o|W|`` (LongTensor, sorted)."""
    score = X.abs().mean(0).float() * W.abs().mean(0).float()
    k = min(int(k), W.shape[1])
    return torch.sort(torch.topk(score, k).indices).values


def quantize_block(ctx: BlockContext):
    from qesim.quant.qe import _cached_whitening, build_shared_expert
    from qesim.quant.qlinear import QuantLinear

    rank = int(ctx.opts.get("rank", 64))
    damp = float(ctx.opts.get("aser_damp", 0.01))
    smooth = bool(ctx.opts.get("aser_smooth", True))
    k = min(int(ctx.opts.get("aser_k", 32)), rank)
    out = {}
    for n, lin in ctx.linears.items():
        W = lin.weight.detach().float()
        X = scaled_inputs(ctx, n)
        if not smooth:
            Wq = ctx.setting.wq(W)
            A, B = whitened_svd(W - Wq, X, rank, damp=damp)
            out[n] = make_qlinear(ctx, n, W=Wq, A=A, B=B, info={"method": "aser", "rank": int(A.shape[1])})
            continue
        C = outlier_channels(W, X, k)
        omega, Wq, A, B, _ = build_shared_expert(W, X, C, ctx.setting.wq, rank, damp, exempt=True, scale=True,
                                                  factors=_cached_whitening(X, damp))
        prev = ctx.in_scales.get(n)
        in_scale = omega if prev is None else prev * omega
        out[n] = QuantLinear(Wq, lin.bias, ctx.setting.a_bits, A=A, B=B, in_scale=in_scale,
                             info={"method": "aser", "rank": int(A.shape[1]), "smooth_channels": int(C.numel())})
    return out
