"""Pipeline timing (pure functions over arrays of design points; cycles).

For ``n`` steps with per-step memory time ``m`` (loads + stores on the busiest memory
channel) and per-step compute time ``c``, a double-buffered pipeline takes

    T = (m + c) + (n - 1) * max(m, c)  =  max(M, C) + min(M, C) / n

with M = n*m and C = n*c: the steady state is bound by the slower resource, plus one
un-overlapped fill/drain step of the faster one. Without double buffering, T = M + C.

This module is the only place the formula is written: the planner's tie-break, every op
lowering, the sweep and the scalar estimate call :func:`pipeline_cycles`; the cycle model
(:mod:`qesim.sim`) replays the same steps event by event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from qesim.perf.points import MEMORIES

BUSY = ("compute", "sfu") + MEMORIES  # resource order of the bound (first maximum wins)


def pipeline_cycles(mem_total, comp_total, steps, double_buffered):
    """Cycles of ``steps`` identical steps whose memory and compute totals are given.

    Scalars or numpy arrays (broadcast together; ``double_buffered`` may be a bool array)."""
    if np.ndim(mem_total) == 0 and np.ndim(comp_total) == 0 and np.ndim(steps) == 0 and np.ndim(double_buffered) == 0:
        if steps <= 0:
            return 0.0
        if double_buffered:
            return max(mem_total, comp_total) + min(mem_total, comp_total) / steps
        return mem_total + comp_total
    piped = np.maximum(mem_total, comp_total) + np.minimum(mem_total, comp_total) / steps
    return np.where(steps <= 0, 0.0, np.where(double_buffered, piped, mem_total + comp_total))


def compute_cycles(mpe_busy, sfu, steps, sfu_overlaps):
    """Compute time of an op over its steps: MPE and SFU overlapped (``max``) or serial (sum).

    Expressed per step and back (``c / steps * steps``) as the schedule distributes it."""
    ov = np.asarray(sfu_overlaps)
    if ov.all():
        c = np.maximum(mpe_busy, sfu)
    elif not ov.any():
        c = mpe_busy + sfu
    else:
        c = np.where(ov, np.maximum(mpe_busy, sfu), mpe_busy + sfu)
    return c / steps * steps


@dataclass
class Timed:
    """Timing of ``k`` ops at ``n`` points: arrays of shape (k, n), cycles per op call."""

    cycles: np.ndarray
    mpe_busy: np.ndarray  # MPE busy cycles (0 where compute is hidden)
    sfu: np.ndarray
    mem_cycles: dict  # memory -> busy cycles
    bound_index: Optional[np.ndarray] = None  # index into BUSY, or -1 for "none" (``bounds=True``)

    def bound(self) -> np.ndarray:
        names = np.array(list(BUSY) + ["none"], dtype=object)
        return names[self.bound_index]


def time_ops(mem_bytes: dict, bpc: dict, mpe, sfu, steps, hidden, double_buffered, sfu_overlaps,
             bounds: bool = True, fixed=0.0, floor=0.0) -> Timed:
    """Time ops from their per-call amounts (arrays of shape (k, n) or broadcastable to it).

    ``mem_bytes[mem]``: bytes loaded + stored per call on ``mem``; ``bpc[mem]``: bytes/cycle per
    point (shape (n,)); ``mpe``/``sfu``: cycles per call; ``hidden``/``double_buffered``/
    ``sfu_overlaps``: per-op flags (shape (k, 1)). ``bounds``: also the per-op bound (first
    maximum of compute, sfu, hbm, ddr busy cycles; "none" if all are 0). ``bpc[mem]`` may also be
    per op, shape (k, n) (fidelity terms: the op class's achieved bandwidth). ``fixed``/``floor``: the
    fidelity terms' fixed cycles and minimum cycles per call, applied as ``max(floor, fixed +
    pipeline)`` (:func:`qesim.perf.terms.overheads.with_overheads`; 0 = none)."""
    shape = np.broadcast_shapes(np.shape(mpe), np.shape(sfu), np.shape(steps),
                                *[np.shape(b) for b in mem_bytes.values()], (1, np.shape(bpc[MEMORIES[0]])[-1]))
    mem = {}
    mem_total = None
    for m in MEMORIES:
        b = mem_bytes.get(m)
        if b is None or not np.any(b):
            mem[m] = np.zeros(shape)
            continue
        c = np.broadcast_to(b / bpc[m], shape)  # 0 bytes -> 0 cycles (an absent memory has bpc = inf)
        mem[m] = c
        mem_total = c if mem_total is None else np.maximum(mem_total, c)
    if mem_total is None:
        mem_total = np.zeros(shape)
    hid = np.asarray(hidden)
    mpe_busy = np.broadcast_to(mpe if not hid.any() else np.where(hid, 0.0, mpe), shape)
    sfu = np.broadcast_to(np.asarray(sfu, dtype=float), shape)
    comp = compute_cycles(mpe_busy, sfu, steps, sfu_overlaps)
    db = np.asarray(double_buffered)
    if db.all():
        cycles = np.maximum(mem_total, comp)
        cycles += np.minimum(mem_total, comp) / steps
    elif not db.any():
        cycles = mem_total + comp
    else:
        cycles = pipeline_cycles(mem_total, comp, steps, db)
    if np.any(fixed) or np.any(floor):
        from qesim.perf.terms.overheads import with_overheads

        cycles = with_overheads(cycles, fixed, floor)
    t = Timed(cycles=np.broadcast_to(cycles, shape), mpe_busy=mpe_busy, sfu=sfu, mem_cycles=mem)
    if bounds:
        best = mpe_busy
        idx = np.zeros(shape, dtype=np.int64)
        for j, v in enumerate([sfu] + [mem[m] for m in MEMORIES], start=1):
            better = v > best
            idx[better] = j
            best = np.maximum(best, v)
        idx[best <= 0] = -1
        t.bound_index = idx
    return t


# ----------------------------------------------------------------------------- one schedule
@dataclass(frozen=True)
class OpTiming:
    cycles: float  # per op call
    mem_cycles: dict  # memory -> busy cycles per call (memories the op touches)
    mpe_cycles: float  # MPE busy cycles per call (0 counted if compute hidden)
    sfu_cycles: float
    bound: str  # "compute" | "hbm" | "ddr" | "sfu" | "none"


def op_timing(s, bytes_per_cycle: dict) -> OpTiming:
    """Cycles of one :class:`~qesim.perf.schedule.OpSchedule` call (n = 1 of :func:`time_ops`)."""
    mb = {m: s.mem_bytes(m) for m in MEMORIES if s.mem_bytes(m) > 0}
    bpc = {m: np.asarray([float(bytes_per_cycle.get(m, np.inf))]) for m in MEMORIES}
    if s.bpc:
        bpc = {m: np.asarray([float(s.bpc.get(m, bytes_per_cycle.get(m, np.inf)))]) for m in MEMORIES}
    t = time_ops({m: np.asarray([[v]]) for m, v in mb.items()}, bpc, np.asarray([[float(s.mpe_cycles)]]),
                 np.asarray([[float(s.sfu_cycles)]]), np.asarray([[float(s.steps)]]), s.compute_hidden,
                 s.double_buffered, s.sfu_overlaps, fixed=s.fixed_cycles, floor=s.floor_cycles)
    return OpTiming(cycles=float(t.cycles[0, 0]), mem_cycles={m: float(t.mem_cycles[m][0, 0]) for m in mb},
                    mpe_cycles=float(t.mpe_busy[0, 0]), sfu_cycles=float(t.sfu[0, 0]), bound=str(t.bound()[0, 0]))
