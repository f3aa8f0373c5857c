"""What every op lowering produces, and the registry of lowerings by op kind.

A *lowering* turns one graph op into its cost at ``n`` design points. It is built once per
(op, structural config, stage) — everything that does not depend on per-point numbers is
computed there — and then :meth:`Lowered.cost` maps a :class:`~qesim.perf.points.HwPoints`
to an :class:`OpCost` of arrays. A new op kind is a new module in ``qesim/perf/ops/`` with a
function decorated ``@lowering("kind")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from qesim.hw.config import HardwareConfig
from qesim.perf.points import MEMORIES, HwPoints


@dataclass
class OpCost:
    """Cost of one call of one op at ``n`` points (arrays of shape (n,) or scalars).

    Units: bytes (``load``/``store``, memory -> bytes per call), cycles (``mpe_cycles``: padded
    MACs at the precision's rate plus adapters, before ``compute_hidden``; ``sfu_cycles``),
    ``steps`` (tile steps of the pipeline), ``macs`` (useful MACs per call, unpadded).
    """

    name: str
    kind: str
    repeat: int
    load: dict
    store: dict
    mpe_cycles: object
    sfu_cycles: object
    steps: object
    macs: float
    compute_hidden: bool
    double_buffered: bool
    sfu_overlaps: bool
    tile_at: Optional[Callable[[int], object]] = None  # i -> TilePlan (GEMM ops)
    notes: tuple = ()
    # fidelity terms (qesim.perf.terms.apply): what the op is, and what the terms add to its timing
    func: str = ""  # SFU function of an 'sfu' op (its op class: softmax / norm / elementwise)
    shape: Optional[tuple] = None  # (M, N, K) of an MPE product, for wave quantisation and the K roll-off
    fixed_cycles: object = 0.0  # cycles added to every call (fixed cost + instruction issue), per point
    floor_cycles: object = 0.0  # minimum cycles of one call, per point
    bpc: Optional[dict] = None  # memory -> achieved bytes/cycle of this op (None: the memory's own)
    #: action counts per call for the energy terms (qesim.perf.terms.actions): MACs per precision and
    #: on-chip buffer reads/writes; off-chip bytes and SFU cycles are read from the fields above
    actions: dict = field(default_factory=dict)

    def mem_bytes(self, mem: str):
        """Bytes loaded + stored per call on ``mem``."""
        return self.load.get(mem, 0.0) + self.store.get(mem, 0.0)

    def total_bytes(self):
        return sum(self.mem_bytes(m) for m in MEMORIES)


class Lowered:
    """One op lowered on one structure. Subclasses set ``name``, ``kind``, ``repeat`` and
    implement :meth:`cost`."""

    name: str
    kind: str
    repeat: int
    #: rows x width of the vector set the op outputs (for SFU fusion), or None
    out_shape: Optional[tuple] = None

    def cost(self, pts: HwPoints) -> OpCost:  # pragma: no cover - interface
        raise NotImplementedError

    def resident_bytes(self) -> float:
        """On-chip bytes the op needs resident for the whole pass (adapters when resident)."""
        return 0.0

    def signature(self):
        """A hashable value equal for two lowered ops exactly when their costs are equal at every
        point (the sweep then costs them once, weighted by their summed repeats), or ``None``."""
        return None


_LOWERINGS: dict[str, Callable] = {}


def lowering(kind: str):
    """Register ``fn(op, hw, stage) -> Lowered`` as the lowering of op kind ``kind``."""

    def deco(fn):
        _LOWERINGS[kind] = fn
        return fn

    return deco


def lower(op, hw: HardwareConfig, stage: str) -> Lowered:
    """The lowering of ``op`` (dispatch on ``op.kind``)."""
    fn = _LOWERINGS.get(op.kind)
    if fn is None:
        raise TypeError(f"no cost model for op kind {op.kind!r} (known: {', '.join(sorted(_LOWERINGS))})")
    return fn(op, hw, stage)


def arr(x, n: int) -> np.ndarray:
    """``x`` broadcast to shape (n,) as float."""
    return np.broadcast_to(np.asarray(x, dtype=float), (n,))


def time_cost(c: OpCost, pts: HwPoints):
    """:func:`qesim.perf.timing.time_ops` of one op's cost: a :class:`~qesim.perf.timing.Timed`
    of shape (1, n)."""
    from qesim.perf.timing import time_ops

    n = pts.n
    mb = {m: arr(c.mem_bytes(m), n)[None, :] for m in MEMORIES if m in c.load or m in c.store}
    return time_ops(mb, pts.bpc, arr(c.mpe_cycles, n)[None, :], arr(c.sfu_cycles, n)[None, :],
                    arr(c.steps, n)[None, :], c.compute_hidden, c.double_buffered, c.sfu_overlaps)
