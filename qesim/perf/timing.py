"""Pipeline timing of a schedule (pure functions; cycles).

For ``n`` steps with per-step memory time ``m`` (loads + stores on the busiest memory
channel) and per-step compute time ``c``, a double-buffered pipeline takes

    T = (m + c) + (n - 1) * max(m, c)  =  max(M, C) + min(M, C) / n

with M = n*m and C = n*c: the steady state is bound by the slower resource, plus one
un-overlapped fill/drain step of the faster one. Without double buffering, T = M + C.
"""

from __future__ import annotations

from dataclasses import dataclass

from qesim.perf.schedule import MEMORIES, OpSchedule


@dataclass(frozen=True)
class OpTiming:
    cycles: float  # per op call
    mem_cycles: dict  # memory -> busy cycles per call
    mpe_cycles: float  # MPE busy cycles per call (0 counted if compute hidden)
    sfu_cycles: float
    bound: str  # "compute" | "hbm" | "ddr" | "sfu" | "none"


def pipeline_cycles(mem_total: float, comp_total: float, steps: int, double_buffered: bool) -> float:
    """Cycles of ``steps`` identical steps whose memory and compute totals are given."""
    if steps <= 0:
        return 0.0
    if double_buffered:
        return max(mem_total, comp_total) + min(mem_total, comp_total) / steps
    return mem_total + comp_total


def op_timing(s: OpSchedule, bytes_per_cycle: dict) -> OpTiming:
    """Cycles of one op call on memories with the given achieved bytes/cycle."""
    mem = {m: s.mem_bytes(m) / bytes_per_cycle[m] for m in MEMORIES if s.mem_bytes(m) > 0}
    mem_total = max(mem.values(), default=0.0)
    mpe = 0.0 if s.compute_hidden else s.mpe_cycles
    comp_total = s.step_compute_cycles() * s.steps
    cycles = pipeline_cycles(mem_total, comp_total, s.steps, s.double_buffered)
    busy = {"compute": mpe, "sfu": s.sfu_cycles, **mem}
    top = max(busy, key=busy.get) if any(v > 0 for v in busy.values()) else "none"
    return OpTiming(cycles=cycles, mem_cycles=mem, mpe_cycles=mpe, sfu_cycles=s.sfu_cycles, bound=top)
