"""GPTQ (Frantar et al.; IST-DASLab/gptq ``gptq.py``), quantizer-facts §5.

H = 2/T X^T X (float64); dead columns (diag 0) -> H_ii = 1, W[:, i] = 0; damping
H += percdamp * mean(diag H) * I (percdamp 0.01); Hinv = chol(chol_inverse(chol(H)))^upper;
blocked column loop (block 128) with error feedback; no act-order.

Grid convention (documented choice): qesim uses the SAME grid as every other method, the MBQ
fake-quant grid of quantizer-facts §1 — per-output-channel symmetric absmax / (2^(b-1)-1) for
W-A settings (scale from the original W, as GPTQ's ``find_params`` on the full W), asymmetric
group-128 min/max for weight-only settings with each group's parameters computed on the current
(error-updated) columns when the loop reaches the group start (as GPTQ does). GPTQ's own
``quant.py`` grid (range forced to include 0; unsigned sym grid) is NOT used, so GPTQ differs
from RTN only by the error-feedback rounding.

If the Cholesky factorisation fails (even after raising damping ×10 twice) the linear falls back
to RTN and a warning is logged (and recorded in the run log).
"""

from __future__ import annotations

import logging

import torch

from qesim.quant.methods import BlockContext, make_qlinear, scaled_inputs
from qesim.quant.primitives import QuantSetting

log = logging.getLogger(__name__)


def _params(w: torch.Tensor, st: QuantSetting):
    """Per-row scale (and zero) of the setting's grid for the columns ``w [out, g]``."""
    if st.symmetric:
        qmax = 2 ** (st.w_bits - 1) - 1
        scale = w.abs().amax(1).clamp(min=1e-5) / qmax
        return scale, None
    max_int = 2**st.w_bits - 1
    wmax, wmin = w.amax(1), w.amin(1)
    scale = (wmax - wmin).clamp(min=1e-5) / max_int
    zero = torch.clamp(-torch.round(wmin / scale), 0, max_int)
    return scale, zero


def _q(col: torch.Tensor, scale, zero, st: QuantSetting):
    if zero is None:
        qmax = 2 ** (st.w_bits - 1) - 1
        return torch.clamp(torch.round(col / scale), -(qmax + 1), qmax) * scale
    max_int = 2**st.w_bits - 1
    return (torch.clamp(torch.round(col / scale) + zero, 0, max_int) - zero) * scale


def gptq_columns(W0: torch.Tensor, Hinv: torch.Tensor, st: QuantSetting, blocksize: int = 128) -> torch.Tensor:
    """GPTQ's blocked column loop: quantize W0 [out, in] (float64, dead columns zeroed) column by
    column, spreading each column's error over the later columns with the upper Cholesky factor
    ``Hinv`` of the inverse damped Hessian. Group parameters are recomputed on the current
    (error-updated) weights at each group start. Returns the fake-quantized weights (float64)."""
    n_in = W0.shape[1]
    Wc = W0.clone()
    Q = torch.zeros_like(Wc)
    g = st.group_size if st.group_size and st.group_size > 0 else -1
    scale, zero = _params(Wc, st) if g == -1 else (None, None)
    for i1 in range(0, n_in, blocksize):
        i2 = min(i1 + blocksize, n_in)
        W1 = Wc[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if g != -1 and col % g == 0:
                cur = torch.cat([W1[:, i:], Wc[:, i2:]], 1)[:, :g]
                scale, zero = _params(cur, st)
            w = W1[:, i]
            d = Hinv1[i, i]
            q = _q(w, scale, zero, st)
            Q[:, col] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        Wc[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q


def gptq_quantize(W: torch.Tensor, X: torch.Tensor, st: QuantSetting, blocksize: int = 128,
                  percdamp: float = 0.01) -> tuple[torch.Tensor, str]:
    """Return (fake-quantized W, status) where status is 'ok' or 'rtn-fallback: ...'."""
    W0 = W.detach().double().clone()
    n_out, n_in = W0.shape
    X = X.reshape(-1, n_in).double()
    H = (2.0 / max(X.shape[0], 1)) * (X.t() @ X)
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    W0[:, dead] = 0.0
    eye = torch.eye(n_in, dtype=torch.float64)
    Hinv = None
    damp = percdamp
    for _ in range(3):
        Hd = H + damp * torch.diagonal(H).mean() * eye
        L, info = torch.linalg.cholesky_ex(Hd)
        if int(info) == 0:
            Hi = torch.cholesky_inverse(L)
            U, info2 = torch.linalg.cholesky_ex(Hi, upper=True)
            if int(info2) == 0 and torch.isfinite(U).all():
                Hinv = U
                break
        damp *= 10
    if Hinv is None:
        msg = f"rtn-fallback: Cholesky of the damped Hessian failed (damp up to {damp / 10:g})"
        log.warning("GPTQ: %s", msg)
        return st.wq(W.detach().float()), msg
    Q = gptq_columns(W0, Hinv, st, blocksize)
    return Q.to(W.dtype if W.dtype.is_floating_point else torch.float32).float(), "ok"


def quantize_block(ctx: BlockContext):
    out = {}
    for n, lin in ctx.linears.items():
        Wq, status = gptq_quantize(lin.weight.detach().float(), scaled_inputs(ctx, n), ctx.setting,
                                   percdamp=float(ctx.opts.get("gptq_damp", 0.01)))
        if status != "ok":
            ctx.log.append(f"block {ctx.index} {n}: {status}")
        out[n] = make_qlinear(ctx, n, W=Wq, info={"method": "gptq", "status": status})
    return out
