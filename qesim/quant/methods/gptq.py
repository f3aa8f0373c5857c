"""GPTQ (Frantar et al.; IST-DASLab/gptq ``gptq.py`` + ``quant.py``), quantizer-facts §5.

H = 2/T X^T X (float64); dead columns (diag 0) -> H_ii = 1, W[:, i] = 0; damping
H += percdamp * mean(diag H) * I (percdamp 0.01); Hinv = chol(chol_inverse(chol(H)))^upper;
blocked column loop (block 128) with error feedback; no act-order (the reference default).

Grid: GPTQ's OWN quantizer (``quant.py::Quantizer.find_params``), the reference grid:
``xmin = min(min(w), 0)``, ``xmax = max(max(w), 0)`` (the range always contains 0);
symmetric (W-A settings, ``sym=True``): ``xmax = max(|xmin|, xmax)``, ``xmin = -xmax`` when
``xmin < 0``, ``scale = (xmax - xmin) / (2^b - 1)``, ``zero = (2^b - 1 + 1) / 2`` (the UNSIGNED grid:
levels ``[-2^(b-1), 2^(b-1) - 1] * scale``); asymmetric (weight-only settings, group 128):
``scale = (xmax - xmin) / (2^b - 1)``, ``zero = round(-xmin / scale)``; an all-zero row/group gets
``xmin = -1, xmax = 1``. ``q = clamp(round(w / scale) + zero, 0, 2^b - 1)``, value
``scale * (q - zero)``. Per-channel parameters come from the whole (original) W, group parameters
from the current (error-updated) columns when the loop reaches the group start, as the reference
does. ``opts['gptq_grid'] = 'mbq'`` switches back to the MBQ fake-quant grid of every other method
(quantizer-facts §1), used before this file followed the reference.

Sequential by default: ``quantize_model`` calibrates block i+1 on the outputs of the already
GPTQ-quantized blocks 0..i (the reference ``llama.py`` loop); ``sequential=False`` overrides.
Deviation from the reference: ``true-sequential`` (sub-layer order inside a block) is off, as in
the reference default, and calibration is on qesim's sets, not C4 at 2048 tokens.

The returned weights are computed as ``float32(scale) * (q - zero)`` in float32, so the integer
codes and scales a checkpoint stores reproduce them exactly.

If the Cholesky factorisation fails (even after raising damping x10 twice) the linear falls back
to RTN on the same grid and a warning is logged (and recorded in the run log).
"""

from __future__ import annotations

import logging

import torch

from qesim.quant.methods import BlockContext, make_qlinear, scaled_inputs
from qesim.quant.primitives import QuantSetting

log = logging.getLogger(__name__)


def _params(w: torch.Tensor, st: QuantSetting, grid: str = "gptq"):
    """Per-row ``(scale, zero)`` of the grid for the columns ``w [out, g]`` (zero None = MBQ sym)."""
    if grid == "mbq":
        if st.symmetric:
            qmax = 2 ** (st.w_bits - 1) - 1
            return w.abs().amax(1).clamp(min=1e-5) / qmax, None
        max_int = 2**st.w_bits - 1
        wmax, wmin = w.amax(1), w.amin(1)
        scale = (wmax - wmin).clamp(min=1e-5) / max_int
        return scale, torch.clamp(-torch.round(wmin / scale), 0, max_int)
    maxq = 2**st.w_bits - 1
    zeros = torch.zeros(w.shape[0], dtype=w.dtype)
    xmin = torch.minimum(w.amin(1), zeros)
    xmax = torch.maximum(w.amax(1), zeros)
    if st.symmetric:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    dead = (xmin == 0) & (xmax == 0)
    xmin = torch.where(dead, -torch.ones_like(xmin), xmin)
    xmax = torch.where(dead, torch.ones_like(xmax), xmax)
    scale = (xmax - xmin) / maxq
    if st.symmetric:
        zero = torch.full_like(scale, (maxq + 1) / 2)
    else:
        zero = torch.round(-xmin / scale)
    return scale, zero


def _codes(col: torch.Tensor, scale, zero, st: QuantSetting) -> torch.Tensor:
    """Integer code (as float) of ``col`` on the grid; value = scale * (code - zero)."""
    if zero is None:  # MBQ symmetric: signed codes, zero 0
        qmax = 2 ** (st.w_bits - 1) - 1
        return torch.clamp(torch.round(col / scale), -(qmax + 1), qmax)
    maxq = 2**st.w_bits - 1
    return torch.clamp(torch.round(col / scale) + zero, 0, maxq)


def gptq_columns(W0: torch.Tensor, Hinv: torch.Tensor, st: QuantSetting, blocksize: int = 128,
                 grid: str = "gptq") -> torch.Tensor:
    """GPTQ's blocked column loop: quantize W0 [out, in] (float64, dead columns zeroed) column by
    column, spreading each column's error over the later columns with the upper Cholesky factor
    ``Hinv`` of the inverse damped Hessian. Group parameters are recomputed on the current
    (error-updated) weights at each group start. Returns the fake-quantized weights as float32
    values ``float32(scale) * (code - zero)`` (the error feedback runs in float64)."""
    n_in = W0.shape[1]
    Wc = W0.clone()
    Q = torch.zeros(W0.shape, dtype=torch.float32)
    g = st.group_size if st.group_size and st.group_size > 0 else -1
    scale, zero = _params(Wc, st, grid) if g == -1 else (None, None)
    for i1 in range(0, n_in, blocksize):
        i2 = min(i1 + blocksize, n_in)
        W1 = Wc[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if g != -1 and col % g == 0:
                cur = torch.cat([W1[:, i:], Wc[:, i2:]], 1)[:, :g]
                scale, zero = _params(cur, st, grid)
            w = W1[:, i]
            d = Hinv1[i, i]
            c = _codes(w, scale, zero, st)
            z = 0.0 if zero is None else zero
            q = scale * (c - z)
            Q[:, col] = scale.float() * (c - z).float()
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        Wc[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q


def rtn_on_grid(W: torch.Tensor, st: QuantSetting, grid: str = "gptq") -> torch.Tensor:
    """Round-to-nearest on GPTQ's grid (the RTN fallback), float32."""
    W = W.detach().float()
    g = st.group_size if st.group_size and st.group_size > 0 else W.shape[1]
    out = torch.empty_like(W)
    for s in range(0, W.shape[1], g):
        blk = W[:, s:s + g]
        scale, zero = _params(blk, st, grid)
        z = 0.0 if zero is None else zero[:, None]
        out[:, s:s + g] = scale[:, None] * (_codes(blk, scale[:, None], None if zero is None else zero[:, None], st) - z)
    return out


def gptq_quantize(W: torch.Tensor, X: torch.Tensor, st: QuantSetting, blocksize: int = 128,
                  percdamp: float = 0.01, grid: str = "gptq") -> tuple[torch.Tensor, str]:
    """Return (fake-quantized W, status) where status is 'ok' or 'rtn-fallback: ...'."""
    if grid not in ("gptq", "mbq"):
        raise ValueError(f"gptq grid must be 'gptq' or 'mbq', got {grid!r}")
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
        return (rtn_on_grid(W, st, grid) if grid == "gptq" else st.wq(W.detach().float())), msg
    return gptq_columns(W0, Hinv, st, blocksize, grid), "ok"


def quantize_block(ctx: BlockContext):
    grid = ctx.opts.get("gptq_grid", "gptq")
    out = {}
    for n, lin in ctx.linears.items():
        Wq, status = gptq_quantize(lin.weight.detach().float(), scaled_inputs(ctx, n), ctx.setting,
                                   percdamp=float(ctx.opts.get("gptq_damp", 0.01)), grid=grid)
        if status != "ok":
            ctx.log.append(f"block {ctx.index} {n}: {status}")
        out[n] = make_qlinear(ctx, n, W=Wq, info={"method": "gptq", "status": status, "grid": grid})
    return out
