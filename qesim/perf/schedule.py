"""The schedule: what both engines (analytical and cycle model) execute.

An op runs as ``steps`` tile steps. Each step loads its operands from off-chip memory, computes
on the MPE (and/or SFU), and stores its results. With double buffering the load of step i+1
overlaps the compute of step i, and stores go out behind compute; without it, a step's load,
compute and store run back to back.

Units: bytes, cycles (clock of ``HardwareConfig.frequency_mhz``).

Per-step quantities are averages over the op's steps (the planner distributes the op's total
bytes and cycles over its steps); ``total_*`` are exact op totals. The cycle model replays
``steps`` identical steps with these per-step amounts, under real resource contention (loads and
stores of one memory share its channel; a load waits while its buffer is full).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

MEMORIES = ("hbm", "ddr")


@dataclass(frozen=True)
class TilePlan:
    """GEMM tiling: tile sizes in elements, loop order and tile counts."""

    mode: str  # "mm" | "mv"
    tm: int
    tk: int
    tn: int
    order: str  # "m_outer" | "n_outer"
    nm: int
    nk: int
    nn: int

    @property
    def steps(self) -> int:
        return self.nm * self.nk * self.nn

    def describe(self) -> str:
        return f"{self.mode}:{self.tm}x{self.tk}x{self.tn}/{self.order}"


@dataclass(frozen=True)
class OpSchedule:
    """One op's schedule. ``load_bytes``/``store_bytes`` map memory name -> bytes per op call."""

    name: str
    kind: str
    repeat: int
    steps: int
    load_bytes: dict  # memory -> total bytes loaded per op call
    store_bytes: dict  # memory -> total bytes stored per op call
    mpe_cycles: float  # total MPE cycles per op call (after padding, at the precision's rate)
    sfu_cycles: float  # total SFU cycles per op call
    compute_hidden: bool  # config assumes MPE compute fully hidden behind memory
    double_buffered: bool
    sfu_overlaps: bool
    macs: int = 0  # useful MACs per call (unpadded, incl. adapters)
    tile: Optional[TilePlan] = None
    notes: tuple = ()
    fixed_cycles: float = 0.0  # fidelity terms: cycles added to the call (fixed cost, instruction issue)
    floor_cycles: float = 0.0  # fidelity terms: minimum cycles of the call
    bpc: Optional[dict] = None  # fidelity terms: memory -> achieved bytes/cycle of this op (None: the memory's)

    @property
    def total_bytes(self) -> float:
        return sum(self.load_bytes.values()) + sum(self.store_bytes.values())

    def mem_bytes(self, mem: str) -> float:
        return self.load_bytes.get(mem, 0.0) + self.store_bytes.get(mem, 0.0)

    def step_compute_cycles(self) -> float:
        """Per-step compute time: MPE (unless hidden) and SFU, overlapped or serial."""
        mpe = 0.0 if self.compute_hidden else self.mpe_cycles
        c = max(mpe, self.sfu_cycles) if self.sfu_overlaps else mpe + self.sfu_cycles
        return c / self.steps


@dataclass
class GraphSchedule:
    graph_name: str
    stage: str
    tokens: int  # tokens produced/processed by one pass (prefill: batch*seq_len; decode: batch)
    ops: list = field(default_factory=list)  # list[OpSchedule]
    warnings: list = field(default_factory=list)


def schedule_of(cost, i: int = 0) -> OpSchedule:
    """The :class:`OpSchedule` of point ``i`` of an :class:`~qesim.perf.ops.base.OpCost`."""
    import numpy as np

    def f(x) -> float:
        a = np.asarray(x, dtype=float)
        return float(a) if a.ndim == 0 else float(a[i])

    return OpSchedule(
        name=cost.name, kind=cost.kind, repeat=cost.repeat, steps=int(f(cost.steps)),
        load_bytes={m: f(v) for m, v in cost.load.items() if f(v) > 0},
        store_bytes={m: f(v) for m, v in cost.store.items() if f(v) > 0},
        mpe_cycles=f(cost.mpe_cycles), sfu_cycles=f(cost.sfu_cycles), compute_hidden=cost.compute_hidden,
        double_buffered=cost.double_buffered, sfu_overlaps=cost.sfu_overlaps, macs=int(cost.macs),
        tile=cost.tile_at(i) if cost.tile_at is not None else None, notes=cost.notes,
        fixed_cycles=f(cost.fixed_cycles), floor_cycles=f(cost.floor_cycles),
        bpc={m: f(v) for m, v in cost.bpc.items()} if cost.bpc is not None else None)
