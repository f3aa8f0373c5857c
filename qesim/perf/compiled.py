"""A layer graph lowered once on one hardware structure, evaluated at any number of design points.

:class:`CompiledGraph` lowers every op (``qesim.perf.ops``), folds the SFU ops that
:func:`qesim.perf.fusion.fusion_plan` fuses into their MPE op, and then :meth:`evaluate` costs
the whole graph at the points of a :class:`~qesim.perf.points.HwPoints`: every op's
:class:`~qesim.perf.ops.base.OpCost`, stacked into (ops x points) arrays and timed with the one
pipeline formula (:func:`qesim.perf.timing.time_ops`). The scalar estimate is ``n = 1``
(:func:`qesim.perf.estimate.estimate_graph`), a sweep is ``n = N``; the cycle model replays the
schedule of one point (:meth:`schedule`).

Fusion (bytes per call): a fused SFU op's cycles join its MPE op's SFU cycles, the op runs
``max`` of the two step counts, and its bytes change by :func:`qesim.perf.fusion.fused_deltas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from qesim.graph.ir import LayerGraph
from qesim.hw.config import HardwareConfig
from qesim.perf import ops as _ops  # noqa: F401  (registers the op lowerings)
from qesim.perf.fusion import fused_deltas, fusion_plan
from qesim.perf.ops.base import Lowered, OpCost, arr, lower
from qesim.perf.points import MEMORIES, HwPoints
from qesim.perf.terms.apply import apply_terms
from qesim.perf.terms.energy import graph_energy
from qesim.perf.timing import BUSY, Timed, time_ops


class _Fused(Lowered):
    """An MPE op with the SFU ops fused into it."""

    def __init__(self, base: Lowered, fused: list, delta: tuple):
        self.base, self.fused = base, fused
        self.name, self.kind, self.repeat, self.out_shape = base.name, base.kind, base.repeat, base.out_shape
        self.dload, self.dstore = delta

    def resident_bytes(self) -> float:
        return self.base.resident_bytes()

    def signature(self):
        sigs = [self.base.signature()] + [f.signature() for f in self.fused]
        if any(x is None for x in sigs):
            return None
        return ("fused", tuple(sigs), tuple(sorted(self.dload.items())), tuple(sorted(self.dstore.items())))

    def cost(self, pts: HwPoints) -> OpCost:
        c = self.base.cost(pts)
        sfu, steps = c.sfu_cycles, c.steps
        actions = dict(c.actions)
        for s in self.fused:
            sc = s.cost(pts)
            sfu = sfu + sc.sfu_cycles
            steps = np.maximum(steps, sc.steps)
            for a, v in sc.actions.items():  # the fused op's buffer accesses (energy terms)
                actions[a] = actions.get(a, 0.0) + v
        load, store = dict(c.load), dict(c.store)
        for m, b in self.dload.items():
            load[m] = load.get(m, 0.0) + b
        for m, b in self.dstore.items():
            store[m] = np.maximum(store.get(m, 0.0) + b, 0.0)
        return OpCost(c.name, c.kind, c.repeat, load, store, c.mpe_cycles, sfu, steps, c.macs, c.compute_hidden,
                      c.double_buffered, c.sfu_overlaps, tile_at=c.tile_at,
                      notes=c.notes + tuple(f"fused {s.name}" for s in self.fused), func=c.func, shape=c.shape,
                      actions=actions)


@dataclass
class GraphResult:
    """A graph at ``n`` points: totals per point (arrays of shape (n,)) and, with ``detail``, the
    per-op costs and timings. Units: cycles, seconds, bytes, tokens."""

    tokens: int
    cycles: np.ndarray  # whole pass (every op x its repeat)
    freq_hz: np.ndarray
    busy: dict  # "compute" | "sfu" | "hbm" | "ddr" -> busy cycles over the pass
    bytes: dict  # memory -> off-chip bytes over the pass
    costs: Optional[list] = None  # list[OpCost] (detail)
    timed: Optional[Timed] = None  # (ops x n) (detail)
    stacked: Optional[dict] = None  # (ops x n) arrays of the costs: mem_bytes[mem], mpe, steps, total_bytes (detail)
    warnings: list = field(default_factory=list)  # per point: list of strings (detail)
    energy: Optional[object] = None  # qesim.perf.terms.energy.GraphEnergy: energy, power, area, cost per point

    @property
    def latency_s(self) -> np.ndarray:
        return self.cycles / self.freq_hz

    @property
    def tokens_per_s(self) -> np.ndarray:
        lat = self.latency_s
        with np.errstate(divide="ignore"):
            return np.where(lat > 0, self.tokens / np.where(lat > 0, lat, 1.0), np.inf)

    @property
    def bound(self) -> np.ndarray:
        """The resource with the most busy cycles over the pass (first maximum of BUSY order)."""
        names = np.array(BUSY, dtype=object)
        return names[np.argmax(np.stack([self.busy[k] for k in BUSY], axis=1), axis=1)]

    def utilization(self) -> dict:
        """Busy cycles / pass cycles per resource (``mpe``, ``sfu``, ``hbm``, ``ddr``)."""
        c = np.where(self.cycles == 0, 1.0, self.cycles)
        return {"mpe": self.busy["compute"] / c, "sfu": self.busy["sfu"] / c, "hbm": self.busy["hbm"] / c,
                "ddr": self.busy["ddr"] / c}


class CompiledGraph:
    """``graph`` lowered on ``hw``'s structure (see the module docstring)."""

    def __init__(self, graph: LayerGraph, hw: HardwareConfig):
        self.graph, self.hw = graph, hw
        self.stage = graph.stage
        self.tokens = graph.batch * graph.seq_len
        lowered = [lower(op, hw, graph.stage) for op in graph.ops]
        self.fusion = fusion_plan(graph, hw)
        deltas = fused_deltas(graph, hw, self.fusion) if self.fusion else {}
        into: dict[int, list] = {}
        for i, f in self.fusion.items():
            into.setdefault(f.into, []).append(lowered[i])
        self.ops: list[Lowered] = []
        for j, low in enumerate(lowered):
            if j in self.fusion:
                continue
            parts = list(low) if isinstance(low, list) else [low]  # a lowering may expand to several ops
            if j in into or j in deltas:
                parts[-1] = _Fused(parts[-1], into.get(j, []), deltas.get(j, ({}, {})))
            self.ops.extend(parts)
        self.resident_bytes = float(sum(o.resident_bytes() for o in self.ops))
        k = len(self.ops)
        self._rep = np.array([o.repeat for o in self.ops], dtype=float).reshape(k, 1)
        # ops with equal costs at every point (e.g. q/k/v projections of one shape): the totals
        # cost each distinct op once, weighted by the summed repeats
        groups: dict = {}
        for j, o in enumerate(self.ops):
            sig = o.signature()
            groups.setdefault(("op", j) if sig is None else sig, []).append(j)
        self._distinct = [js[0] for js in groups.values()]
        self._distinct_rep = np.array([sum(self.ops[j].repeat for j in js) for js in groups.values()], dtype=float)

    def costs(self, pts: HwPoints) -> list:
        return [o.cost(pts) for o in self.ops]

    def evaluate(self, pts: HwPoints, detail: bool = False) -> GraphResult:
        """The graph at every point of ``pts`` (``detail``: keep every op's cost and timing)."""
        n = pts.n
        if detail:
            costs, rep = self.costs(pts), self._rep[:, 0]
        else:
            costs, rep = [self.ops[j].cost(pts) for j in self._distinct], self._distinct_rep
        costs = apply_terms(costs, pts, self.hw)  # fidelity terms (qesim.perf.terms.apply)
        k = len(costs)
        def stack(xs):
            """(k, n) array of per-op values that are scalars or arrays of shape (n,)."""
            if n == 1:  # one point: plain floats, no broadcasting machinery (np.ndim per value cost 16 %)
                return np.array([x if isinstance(x, (float, int)) else x.reshape(-1)[0] for x in xs],
                                dtype=float).reshape(k, 1)
            if all(np.ndim(x) == 0 for x in xs):
                return np.asarray(xs, dtype=float).reshape(k, 1)
            return np.stack([arr(x, n) for x in xs]) if xs else np.zeros((0, n))

        mb = {m: stack([c.mem_bytes(m) for c in costs]) for m in MEMORIES}
        flag = lambda a: np.array([getattr(c, a) for c in costs], dtype=bool).reshape(k, 1)  # noqa: E731
        mpe, steps = stack([c.mpe_cycles for c in costs]), stack([c.steps for c in costs])
        bpc = pts.bpc
        if any(c.bpc is not None for c in costs):  # per-op achieved bytes/cycle (ops x points)
            bpc = {m: stack([(c.bpc or pts.bpc)[m] for c in costs]) for m in MEMORIES}
        t = time_ops(mb, bpc, mpe, stack([c.sfu_cycles for c in costs]), steps, flag("compute_hidden"),
                     flag("double_buffered"), flag("sfu_overlaps"), bounds=detail,
                     fixed=stack([c.fixed_cycles for c in costs]), floor=stack([c.floor_cycles for c in costs]))
        def tot(x):
            """Sum over ops x repeat of a (k, n) or (k, 1) array -> (n,). einsum, not matmul: BLAS threads
            on a busy machine cost 10x (measured), and matmul on a broadcast view copies."""
            x = np.asarray(x, dtype=float)
            if x.ndim == 2 and x.shape[1] == n:
                return np.einsum("k,kn->n", rep, x)
            return np.full(n, float(np.einsum("k,k->", rep, np.broadcast_to(x, (k, 1)).reshape(k))))
        busy = {"compute": tot(t.mpe_busy), "sfu": tot(t.sfu)}
        for m in MEMORIES:
            busy[m] = tot(t.mem_cycles[m])
        res = GraphResult(tokens=self.tokens, cycles=tot(t.cycles), freq_hz=pts.freq_hz, busy=busy,
                          bytes={m: tot(mb[m]) for m in MEMORIES})
        res.energy = graph_energy(self.hw, costs, np.broadcast_to(t.cycles, (k, n)), rep, pts,
                                  self.tokens)  # reads the result only (qesim.perf.terms.energy)
        if detail:
            res.costs, res.timed = costs, t
            res.stacked = {"mem_bytes": mb, "mpe": mpe, "steps": steps,
                           "total_bytes": stack([c.total_bytes() for c in costs])}
            res.warnings = [self._warnings(pts, i) for i in range(n)]
        return res

    def _warnings(self, pts: HwPoints, i: int) -> list:
        cap = float(pts.buf["adapter_bytes"][i])
        if self.resident_bytes > cap:
            return [f"policy.adapters_resident: the graph's adapters need {self.resident_bytes / 2**20:.1f} MiB "
                    f"on chip, buffers.adapter_bytes is {cap / 2**20:.1f} MiB"]
        return []

    def schedule(self, pts: Optional[HwPoints] = None, i: int = 0, res: Optional[GraphResult] = None):
        """The :class:`~qesim.perf.schedule.GraphSchedule` of point ``i`` (what the cycle model replays)."""
        from qesim.perf.schedule import GraphSchedule, schedule_of

        pts = HwPoints.of(self.hw) if pts is None else pts
        res = self.evaluate(pts, detail=True) if res is None or res.costs is None else res
        gs = GraphSchedule(graph_name=self.graph.name, stage=self.stage, tokens=self.tokens)
        gs.ops = [schedule_of(c, i) for c in res.costs]
        gs.warnings = list(res.warnings[i])
        return gs
