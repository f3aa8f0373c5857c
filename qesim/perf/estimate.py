"""The scalar estimate: one graph on one config (the n = 1 call of the cost model).

:func:`estimate_graph` memoises the lowered graph per (graph, hardware structure) and the result
per (lowered graph, point values), so a repeated or re-parameterised estimate does not lower the
graph again. Graphs and configs are treated as values: modify copies (``model_copy`` /
``HardwareConfig.with_updates``), never an object that was already estimated.

:class:`GraphEstimate` holds the per-op table as typed columns (:data:`OP_COLUMNS`), the totals,
and builds the pandas DataFrame only when ``.ops`` is read. Units: cycles of ``frequency_hz``;
bytes; seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import numpy as np

from qesim.graph.ir import LayerGraph
from qesim.hw.config import HardwareConfig
from qesim.perf.compiled import CompiledGraph, GraphResult
from qesim.perf.points import MEMORIES, HwPoints, is_point_field, structural_key
from qesim.perf.timing import BUSY

OP_COLUMNS = [
    "name", "kind", "repeat", "cycles", "total_cycles", "mpe_cycles", "mpe_busy_cycles", "sfu_cycles",
    "hbm_cycles", "ddr_cycles", "hbm_bytes", "ddr_bytes", "bytes", "macs", "steps", "bound", "tile",
]
#: the fp16 baseline of a speedup: the same workload dense at W16A16 with no adapters
FP16_BASELINE = {"setting": "W16A16", "method": "none", "density": 1.0}


def fp16_baseline(workload: dict) -> dict:
    """The workload (builder arguments) whose latency is the denominator of ``speedup_vs_fp16``."""
    return {**workload, **FP16_BASELINE}


class GraphEstimate:
    """Totals and per-op table of one graph on one hardware config.

    ``columns`` maps every name of :data:`OP_COLUMNS` to a sequence (one entry per op); or give
    ``ops`` (a DataFrame with those columns). Units: cycles of ``frequency_hz``; bytes; seconds.
    """

    def __init__(self, graph: str, hw: str, stage: str, tokens: int, frequency_hz: float,
                 ops=None, warnings: Optional[list] = None, columns: Optional[dict] = None,
                 energy: Optional[dict] = None):
        if (ops is None) == (columns is None):
            raise ValueError("GraphEstimate needs exactly one of ops (DataFrame) or columns")
        self.graph, self.hw, self.stage, self.tokens = graph, hw, stage, tokens
        self.frequency_hz = frequency_hz
        self.warnings = list(warnings or [])
        self.energy = energy  # the ``energy`` object of to_dict (qesim.perf.terms.energy), or None
        self._ops = ops
        if columns is None:
            columns = {c: ops[c].tolist() for c in OP_COLUMNS}
        missing = [c for c in OP_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"GraphEstimate columns missing: {missing}")
        self._cols = columns
        rep = np.asarray(columns["repeat"], dtype=float)
        f = lambda c: np.asarray(columns[c], dtype=float)  # noqa: E731
        self._cycles = float(f("total_cycles").sum())
        self._busy = {"compute": float((f("mpe_busy_cycles") * rep).sum()), "sfu": float((f("sfu_cycles") * rep).sum()),
                      "hbm": float((f("hbm_cycles") * rep).sum()), "ddr": float((f("ddr_cycles") * rep).sum())}
        self._bytes = {m: float((f(f"{m}_bytes") * rep).sum()) for m in MEMORIES}

    @property
    def ops(self):
        """Per-op table (pandas DataFrame, columns ``OP_COLUMNS``), one row per op."""
        if self._ops is None:
            import pandas as pd

            self._ops = pd.DataFrame({c: self._cols[c] for c in OP_COLUMNS})
        return self._ops

    @property
    def columns(self) -> dict:
        """The per-op table as ``{column: list}`` (no pandas)."""
        return self._cols

    @property
    def cycles(self) -> float:
        """Total cycles of the pass (every op times its repeat count)."""
        return self._cycles

    @property
    def latency_s(self) -> float:
        return self._cycles / self.frequency_hz

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.latency_s if self.latency_s > 0 else float("inf")

    @property
    def bytes_by_memory(self) -> dict:
        """Off-chip bytes per memory over the whole pass."""
        return dict(self._bytes)

    @property
    def bound(self) -> str:
        """The resource with the most busy cycles over the whole pass."""
        return max(self._busy, key=self._busy.get)

    def utilization(self) -> dict:
        """Busy cycles / total cycles per resource."""
        c = self._cycles or 1.0
        b = self._busy
        return {"mpe": b["compute"] / c, "sfu": b["sfu"] / c, "hbm": b["hbm"] / c, "ddr": b["ddr"] / c}

    def to_dict(self) -> dict:
        """The ``qesim estimate --json`` object."""
        c = self._cols
        ops = []
        for i in range(len(c["name"])):
            ops.append({
                "name": c["name"][i], "kind": c["kind"][i], "repeat": int(c["repeat"][i]),
                "cycles": float(c["cycles"][i]), "total_cycles": float(c["total_cycles"][i]),
                "bytes": float(c["bytes"][i]), "hbm_bytes": float(c["hbm_bytes"][i]),
                "ddr_bytes": float(c["ddr_bytes"][i]), "macs": int(c["macs"][i]),
                "mpe_cycles": float(c["mpe_cycles"][i]), "sfu_cycles": float(c["sfu_cycles"][i]),
                "bound": c["bound"][i], "tile": c["tile"][i],
            })
        d = {
            "graph": self.graph, "hw": self.hw, "stage": self.stage, "tokens": self.tokens,
            "cycles": self.cycles, "latency_s": self.latency_s, "tokens_per_s": self.tokens_per_s,
            "bound": self.bound, "bytes": self.bytes_by_memory, "utilization": self.utilization(),
            "warnings": list(self.warnings), "ops": ops,
        }
        if self.energy is not None:  # energy per token, power, area, die cost (None = not known)
            d["energy"] = self.energy
            for k in ("energy_per_token_j", "avg_power_w", "area_mm2", "cost_usd"):
                d[k] = self.energy[k]
        return d

    def __repr__(self) -> str:
        return (f"GraphEstimate({self.graph!r} on {self.hw!r}, {self.stage}: {self.latency_s * 1e3:.4g} ms, "
                f"{self.tokens_per_s:.4g} tokens/s, {self.bound}-bound, {len(self._cols['name'])} ops)")


def estimate_from_result(res: GraphResult, i: int, *, graph_name: str, hw_name: str, stage: str,
                         tokens: int) -> GraphEstimate:
    """The :class:`GraphEstimate` of point ``i`` of a detailed :class:`GraphResult`."""
    t, costs, st = res.timed, res.costs, res.stacked
    col = lambda a: (a[:, i] if a.shape[1] > 1 else a[:, 0]).tolist()  # noqa: E731
    cycles = col(t.cycles)
    reps = [c.repeat for c in costs]
    tiles = [c.tile_at(i) if c.tile_at is not None else None for c in costs]
    cols = {
        "name": [c.name for c in costs], "kind": [c.kind for c in costs], "repeat": reps, "cycles": cycles,
        "total_cycles": [x * r for x, r in zip(cycles, reps)], "mpe_cycles": col(st["mpe"]),
        "mpe_busy_cycles": col(t.mpe_busy), "sfu_cycles": col(t.sfu), "hbm_cycles": col(t.mem_cycles["hbm"]),
        "ddr_cycles": col(t.mem_cycles["ddr"]), "hbm_bytes": col(st["mem_bytes"]["hbm"]),
        "ddr_bytes": col(st["mem_bytes"]["ddr"]), "bytes": col(st["total_bytes"]),
        "macs": [int(c.macs) for c in costs], "steps": [int(x) for x in col(st["steps"])],
        "bound": t.bound()[:, i].tolist(), "tile": [x.describe() if x else "" for x in tiles],
    }
    energy = None
    if res.energy is not None:
        from qesim.perf.terms.energy import energy_object

        energy = energy_object(res.energy, i, [c.name for c in costs])
    return GraphEstimate(graph=graph_name, hw=hw_name, stage=stage, tokens=tokens,
                         frequency_hz=float(res.freq_hz[i]), columns=cols, warnings=res.warnings[i], energy=energy)


# ----------------------------------------------------------------------------- memo
class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get(self, key, default=None):
        v = super().get(key, default)
        if v is not default:
            self.move_to_end(key)
        return v

    def put(self, key, value):
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


_STRUCT = _LRU(256)  # id(hw) -> (hw, structural key)
_COMPILED = _LRU(256)  # (id(graph), structural key) -> (graph, CompiledGraph)
_RESULTS = _LRU(1024)  # (id(CompiledGraph), point key, hw name) -> GraphEstimate


def _struct_key(hw: HardwareConfig) -> str:
    hit = _STRUCT.get(id(hw))
    if hit is not None and hit[0] is hw:
        return hit[1]
    parent = getattr(hw, "_derived_from", None)  # ``with_updates`` of point fields only: the parent's structure
    if parent is not None and all(is_point_field(p) for p in parent[1]):
        key = _struct_key(parent[0])
    else:
        key = structural_key(hw)
    _STRUCT.put(id(hw), (hw, key))
    return key


def compiled_graph(graph: LayerGraph, hw: HardwareConfig) -> CompiledGraph:
    """The lowered graph of ``graph`` on ``hw``'s structure (memoised)."""
    key = (id(graph), _struct_key(hw))
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is graph:
        return hit[1]
    cg = CompiledGraph(graph, hw)
    _COMPILED.put(key, (graph, cg))
    return cg


def clear_caches() -> None:
    """Forget every memoised lowering and result (benchmarks: measure a cold estimate)."""
    from qesim.perf import planner, points
    from qesim.perf.ops.linear import _PLAN_MEMO

    _STRUCT.clear()
    _COMPILED.clear()
    _RESULTS.clear()
    _PLAN_MEMO.clear()
    points._OF.clear()
    planner._LINES.clear()
    planner._LINE_TRAFFIC.clear()
    planner._BUFGROUPS.clear()
    for f in (planner._dim, planner._tables, planner._free_lists, planner.plan_gemm):
        f.cache_clear()


def estimate_graph(graph: LayerGraph, hw: HardwareConfig) -> GraphEstimate:
    """Analytical estimate of one pass of ``graph`` on ``hw`` (n = 1 of the cost model)."""
    cg = compiled_graph(graph, hw)
    pts = HwPoints.of(hw)
    key = (id(cg), pts.key(), hw.name)
    est = _RESULTS.get(key)
    if est is not None and est[0] is cg:
        return est[1]
    est = estimate_from_result(cg.evaluate(pts, detail=True), 0, graph_name=graph.name, hw_name=hw.name,
                               stage=cg.stage, tokens=cg.tokens)
    _RESULTS.put(key, (cg, est))
    return est


def graph_cycles(graph: LayerGraph, hw: HardwareConfig) -> float:
    """Total cycles of one pass (no per-op table)."""
    return float(compiled_graph(graph, hw).evaluate(HwPoints.of(hw)).cycles[0])


def speedup(base: LayerGraph, quant: LayerGraph, hw: HardwareConfig) -> float:
    """Latency of ``base`` (fp16) over latency of ``quant`` on the same config."""
    return graph_cycles(base, hw) / graph_cycles(quant, hw)


def plan_graph(graph: LayerGraph, hw: HardwareConfig):
    """The :class:`~qesim.perf.schedule.GraphSchedule` of ``graph`` on ``hw`` (what the cycle model replays)."""
    return compiled_graph(graph, hw).schedule(HwPoints.of(hw))


def estimate_schedule(gs, hw: HardwareConfig) -> GraphEstimate:
    """Time a (possibly hand-built) :class:`~qesim.perf.schedule.GraphSchedule` on ``hw``."""
    from qesim.perf.ops.base import OpCost
    from qesim.perf.timing import time_ops

    pts = HwPoints.of(hw)
    k = len(gs.ops)
    col = lambda xs: np.asarray(xs, dtype=float).reshape(k, 1)  # noqa: E731
    mb = {m: col([s.mem_bytes(m) for s in gs.ops]) for m in MEMORIES}
    flag = lambda a: np.array([getattr(s, a) for s in gs.ops], dtype=bool).reshape(k, 1)  # noqa: E731
    bpc = pts.bpc
    if any(s.bpc for s in gs.ops):
        bpc = {m: col([(s.bpc or {}).get(m, float(pts.bpc[m][0])) for s in gs.ops]) for m in MEMORIES}
    t = time_ops(mb, bpc, col([s.mpe_cycles for s in gs.ops]), col([s.sfu_cycles for s in gs.ops]),
                 col([s.steps for s in gs.ops]), flag("compute_hidden"), flag("double_buffered"), flag("sfu_overlaps"),
                 fixed=col([s.fixed_cycles for s in gs.ops]), floor=col([s.floor_cycles for s in gs.ops]))
    costs = [OpCost(s.name, s.kind, s.repeat, dict(s.load_bytes), dict(s.store_bytes), s.mpe_cycles, s.sfu_cycles,
                    s.steps, s.macs, s.compute_hidden, s.double_buffered, s.sfu_overlaps,
                    tile_at=(lambda i, _t=s.tile: _t) if s.tile is not None else None) for s in gs.ops]
    rep = np.array([s.repeat for s in gs.ops], dtype=float).reshape(k, 1)
    res = GraphResult(tokens=gs.tokens, cycles=(t.cycles * rep).sum(axis=0), freq_hz=pts.freq_hz, busy={},
                      bytes={}, costs=costs, timed=t, warnings=[list(gs.warnings)],
                      stacked={"mem_bytes": mb, "mpe": col([s.mpe_cycles for s in gs.ops]),
                               "steps": col([s.steps for s in gs.ops]), "total_bytes": col([s.total_bytes for s in gs.ops])})
    return estimate_from_result(res, 0, graph_name=gs.graph_name, hw_name=hw.name, stage=gs.stage, tokens=gs.tokens)
