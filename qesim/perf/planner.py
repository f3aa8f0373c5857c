"""Tiling planner for a GEMM y[M,N] = x[M,K] W[K,N] on a buffered, double-buffered engine.

The planner searches tile sizes (tm, tk, tn) and the outer loop order, keeps the tilings whose
tiles fit the on-chip buffers, and returns the one with the least off-chip traffic, and among
those the fewest pipeline cycles, then the fewest steps. Traffic first (as accelerator compilers
and Timeloop's energy objective do) keeps the plan independent of bandwidth and guarantees the
invariants "a bigger buffer never more traffic" and "more bandwidth never slower". The reduction dimension k is always innermost, so an output
tile accumulates on chip and is written once.

Off-chip traffic of a tiling (bytes):
- ``m_outer`` (for m-tile: for n-tile: for k-tile): W is re-read once per m-tile unless it is a
  single resident tile (nk = nn = 1); x is read once if its row panel stays on chip (nk = 1),
  else once per n-tile.
- ``n_outer`` (for n-tile: for m-tile: for k-tile): W is read once if its column panel stays on
  chip (nk = 1), else once per m-tile; x is read once if it is a single resident tile
  (nk = nm = 1), else once per n-tile.
- y is written once.

Compute: MACs padded to the engine's spatial array (m, k, n) per tile, at the MAC rate of the
operand precisions. Units: elements, bits, bytes, cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qesim.perf.schedule import TilePlan

EXHAUSTIVE_DIM = 64  # dimensions up to this size are searched exhaustively
ACC_BYTES = 4  # accumulator bytes per output element held on chip (int32 / fp32)


@dataclass(frozen=True)
class GemmProblem:
    """Everything the planner needs (hashable, so plans are cached)."""

    M: int
    K: int
    N: int
    w_bytes_per_elem: float  # stored bytes per weight element (bits*kept/8 + index + metadata)
    a_bytes_per_elem: float  # input activation bytes per element as read from memory
    o_bytes_total: float  # output bytes written off-chip per call (0 if on chip)
    x_offchip: bool  # x is read from off-chip memory
    extra_bytes: float  # bytes loaded once per call independent of tiling (adapters, scales)
    w_buf: int
    a_buf: int
    o_buf: int
    double_buffered: bool
    pm: int
    pk: int
    pn: int
    macs_per_cycle: float
    extra_cycles: float  # compute cycles independent of tiling (adapters, router)
    compute_hidden: bool
    w_bpc: float  # bytes/cycle of the memory holding weights
    a_bpc: float  # bytes/cycle of the memory holding activations
    same_memory: bool  # weights and activations share one memory channel
    mode: str


def _pad(d: np.ndarray | int, t: np.ndarray, p: int) -> np.ndarray:
    """Padded extent of dimension d cut into tiles of t, each padded to a multiple of p."""
    full = d // t
    rem = d - full * t
    return full * (np.ceil(t / p) * p) + np.ceil(rem / p) * p


def candidates(d: int, p: int, cap: int = 40) -> np.ndarray:
    """Tile sizes worth trying for a dimension of extent d on an array of width p.

    Every size for d <= EXHAUSTIVE_DIM (the search is then exact); otherwise all distinct
    ceil(d/j) (every tile count) and every multiple of p up to d, thinned to a geometric subset of
    about ``cap`` values for large d (a heuristic: edge-tile padding can differ by a few %).
    """
    if d <= EXHAUSTIVE_DIM:
        return np.arange(1, d + 1, dtype=np.int64)
    vals = {d}
    j = 1
    while True:
        v = -(-d // j)
        vals.add(v)
        if v <= 1:
            break
        j = max(j + 1, -(-d // (v - 1)))
    vals.update(range(p, d + 1, p))
    arr = np.array(sorted(vals), dtype=np.int64)
    if len(arr) > cap:
        idx = np.unique(np.round(np.geomspace(1, len(arr), cap)).astype(np.int64) - 1)
        keep = set(arr[idx].tolist())
        keep.update(v for v in arr.tolist() if v % p == 0 and (v & (v - 1)) == 0)  # p * 2^i
        keep.update({d, -(-d // 2), -(-d // 4)})
        arr = np.array(sorted(keep), dtype=np.int64)
    return arr


def evaluate(prob: GemmProblem, tm, tk, tn, order: str):
    """Vectorised cost of tilings: (cycles, bytes, steps, fits). Arrays broadcast together."""
    M, K, N = prob.M, prob.K, prob.N
    nm = np.ceil(M / tm)
    nk = np.ceil(K / tk)
    nn = np.ceil(N / tn)
    db = 2 if prob.double_buffered else 1
    fits = (
        (tk * tn * prob.w_bytes_per_elem * db <= prob.w_buf)
        & (tm * tk * prob.a_bytes_per_elem * db <= prob.a_buf)
        & (tm * tn * ACC_BYTES * db <= prob.o_buf)
    )
    if order == "m_outer":
        w_reads = np.where((nk == 1) & (nn == 1), 1.0, nm)
        x_reads = np.where(nk == 1, 1.0, nn)
    else:
        w_reads = np.where(nk == 1, 1.0, nm)
        x_reads = np.where((nk == 1) & (nm == 1), 1.0, nn)
    w_bytes = w_reads * (K * N * prob.w_bytes_per_elem)
    x_bytes = x_reads * (M * K * prob.a_bytes_per_elem) if prob.x_offchip else 0.0 * w_reads
    a_bytes = x_bytes + prob.o_bytes_total
    if prob.same_memory:
        mem = (w_bytes + a_bytes + prob.extra_bytes) / prob.w_bpc
    else:
        mem = np.maximum((w_bytes + prob.extra_bytes) / prob.w_bpc, a_bytes / prob.a_bpc)
    padded = _pad(M, tm, prob.pm) * _pad(K, tk, prob.pk) * _pad(N, tn, prob.pn)
    comp = 0.0 * mem if prob.compute_hidden else padded / prob.macs_per_cycle + prob.extra_cycles
    steps = nm * nk * nn
    if prob.double_buffered:
        cyc = np.maximum(mem, comp) + np.minimum(mem, comp) / steps
    else:
        cyc = mem + comp
    total_bytes = w_bytes + a_bytes + prob.extra_bytes
    return cyc, total_bytes, steps, fits


def _better(a: tuple, b: tuple) -> bool:
    """Lexicographic (bytes, cycles) with a relative tolerance for float noise."""
    if a[0] < b[0] * (1 - 1e-9):
        return True
    if b[0] < a[0] * (1 - 1e-9):
        return False
    return a[1] < b[1]


@lru_cache(maxsize=16384)
def plan_gemm(prob: GemmProblem) -> TilePlan:
    """Best tiling of ``prob`` over the candidate grid (see module docstring)."""
    cm = candidates(prob.M, prob.pm)
    ck = candidates(prob.K, prob.pk)
    cn = candidates(prob.N, prob.pn)
    tm, tk, tn = np.meshgrid(cm, ck, cn, indexing="ij")
    best = None
    for order in ("m_outer", "n_outer"):
        cyc, byt, steps, fits = evaluate(prob, tm, tk, tn, order)
        if not fits.any():
            continue
        byt = np.broadcast_to(byt, fits.shape).ravel()
        cyc = np.broadcast_to(cyc, fits.shape).ravel()
        stp = np.broadcast_to(steps, fits.shape).ravel()
        key = np.where(fits.ravel(), byt, np.inf)
        mn = key.min()
        cand = np.flatnonzero(key <= mn * (1 + 1e-9))  # least off-chip traffic ...
        c = cyc[cand]
        cand = cand[c <= c.min() * (1 + 1e-12)]  # ... then fewest cycles ...
        i = cand[np.argmin(stp[cand])]  # ... then fewest steps
        rec = (float(byt[i]), float(cyc[i]), order, i)
        if best is None or _better(rec, best):
            best = rec
    if best is None:
        # nothing fits even at the smallest tiles: fall back to the array granule and report it
        t = (min(prob.M, prob.pm), min(prob.K, prob.pk), min(prob.N, prob.pn))
        return TilePlan(prob.mode, *t, "m_outer", math.ceil(prob.M / t[0]), math.ceil(prob.K / t[1]),
                        math.ceil(prob.N / t[2]))
    _, _, order, i = best
    a, b, c = np.unravel_index(i, tm.shape)
    tmv, tkv, tnv = int(cm[a]), int(ck[b]), int(cn[c])
    return TilePlan(prob.mode, tmv, tkv, tnv, order, math.ceil(prob.M / tmv), math.ceil(prob.K / tkv),
                    math.ceil(prob.N / tnv))


def tiling_fits(prob: GemmProblem, plan: TilePlan) -> bool:
    db = 2 if prob.double_buffered else 1
    return (plan.tk * plan.tn * prob.w_bytes_per_elem * db <= prob.w_buf
            and plan.tm * plan.tk * prob.a_bytes_per_elem * db <= prob.a_buf
            and plan.tm * plan.tn * ACC_BYTES * db <= prob.o_buf)


def plan_cost(prob: GemmProblem, plan: TilePlan) -> tuple[float, float, float, float]:
    """(cycles, total bytes, weight+x bytes split is internal) for a chosen plan.

    Returns (cycles, bytes, mpe_cycles, steps)."""
    cyc, byt, steps, _ = evaluate(prob, np.array(plan.tm), np.array(plan.tk), np.array(plan.tn), plan.order)
    padded = _pad(prob.M, np.array(plan.tm), prob.pm) * _pad(prob.K, np.array(plan.tk), prob.pk) * _pad(
        prob.N, np.array(plan.tn), prob.pn)
    mpe = float(padded / prob.macs_per_cycle + prob.extra_cycles)
    return float(cyc), float(byt), mpe, float(steps)


def traffic(prob: GemmProblem, plan: TilePlan) -> tuple[float, float]:
    """(weight bytes, x bytes) per call of the chosen plan (excludes output and extras)."""
    M, K, N = prob.M, prob.K, prob.N
    if plan.order == "m_outer":
        w_reads = 1 if (plan.nk == 1 and plan.nn == 1) else plan.nm
        x_reads = 1 if plan.nk == 1 else plan.nn
    else:
        w_reads = 1 if plan.nk == 1 else plan.nm
        x_reads = 1 if (plan.nk == 1 and plan.nm == 1) else plan.nn
    w = w_reads * K * N * prob.w_bytes_per_elem
    x = x_reads * M * K * prob.a_bytes_per_elem if prob.x_offchip else 0.0
    return w, x
