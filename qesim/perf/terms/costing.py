"""Energy, power, area and cost of one estimate as a report object (n = 1 of the cost model).

:func:`cost_graph` evaluates the graph's :class:`~qesim.perf.compiled.CompiledGraph` at one point
(the config itself, or the config with point-field overrides ``over``) and reads the
:class:`~qesim.perf.terms.energy.GraphEnergy` the cost model computed there (action counts from
each op's lowering, priced by :mod:`.energy`; area and die cost from :mod:`.area`).

``model`` says which energy model applied: ``per-action`` (an NPU with sourced per-action
energies), ``board-power`` (a bought device: published board power x time) or ``none`` (nothing
known: energy fields are None, never invented).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from qesim.perf.terms.energy import CLASSES


@dataclass
class CostReport:
    """Energy/area/cost of one pass (units in the names). Per-op lists follow the cost model's ops."""

    model: str
    tokens: int
    latency_s: float
    energy_j: Optional[float]
    energy_per_token_j: Optional[float]
    avg_power_w: Optional[float]
    static_w: Optional[float]
    area_mm2: Optional[float]
    cost_usd: Optional[float]
    area_breakdown_mm2: dict = field(default_factory=dict)
    op_names: list = field(default_factory=list)
    op_kinds: list = field(default_factory=list)
    op_repeats: list = field(default_factory=list)
    op_energy_j: list = field(default_factory=list)  # all repeats
    op_breakdown_j: list = field(default_factory=list)  # per op: class -> J (all repeats)
    op_actions: list = field(default_factory=list)  # per op: action -> count per call (MACs, buffer bytes)

    def breakdown_by_class(self) -> dict:
        """J per action class (mac, sfu, sram, hbm, ddr, static) over the pass."""
        tot = {c: 0.0 for c in CLASSES}
        for b in self.op_breakdown_j:
            for c, v in b.items():
                tot[c] = tot.get(c, 0.0) + v
        return tot

    def breakdown_by_kind(self) -> dict:
        """J per op kind (linear, attention, sfu, embedding, moe) over the pass."""
        out: dict = {}
        for k, e in zip(self.op_kinds, self.op_energy_j):
            out[k] = out.get(k, 0.0) + e
        return out

    def to_dict(self) -> dict:
        """The ``energy`` object of ``qesim estimate --json``."""
        return {
            "model": self.model, "energy_j": self.energy_j, "energy_per_token_j": self.energy_per_token_j,
            "avg_power_w": self.avg_power_w, "static_w": self.static_w, "area_mm2": self.area_mm2,
            "cost_usd": self.cost_usd, "area_breakdown_mm2": dict(self.area_breakdown_mm2),
            "by_class_j": self.breakdown_by_class() if self.energy_j is not None else {},
            "ops": [{"name": n, "energy_j": e, "by_class_j": b}
                    for n, e, b in zip(self.op_names, self.op_energy_j, self.op_breakdown_j)],
        }


def _scalar(v) -> float:
    return float(np.ravel(np.asarray(v, dtype=float))[0])


def cost_graph(graph, hw, over: Optional[dict] = None, op_cycles=None) -> CostReport:
    """Energy (per op, pass, token), average power, area and die cost of ``graph`` on ``hw``.

    ``over``: point-field overrides (dotted paths of ``qesim.perf.points.POINT_FIELDS_RE``).
    ``op_cycles``: cycles of one call of each op from another engine (the cycle model): the static
    (or board) energy then follows those times; the dynamic energy is the actions' and unchanged."""
    from qesim.perf.estimate import compiled_graph
    from qesim.perf.points import HwPoints

    cg = compiled_graph(graph, hw)
    pts = HwPoints(hw, 1, over) if over else HwPoints.of(hw)
    res = cg.evaluate(pts, detail=True)
    e = res.energy
    d = e.at(0)
    cyc = np.asarray(res.timed.cycles[:, 0], dtype=float)
    rep = np.array([c.repeat for c in res.costs], dtype=float)
    latency = float((cyc * rep).sum() / pts.freq_hz[0])
    rpt = CostReport(model=e.model, tokens=cg.tokens, latency_s=latency, energy_j=d["energy_j"],
                     energy_per_token_j=d["energy_per_token_j"], avg_power_w=d["avg_power_w"],
                     static_w=d["static_w"], area_mm2=d["area_mm2"], cost_usd=d["cost_usd"],
                     area_breakdown_mm2={k: v for k, v in d["area_breakdown_mm2"].items()},
                     op_names=[c.name for c in res.costs], op_kinds=[c.kind for c in res.costs],
                     op_repeats=[c.repeat for c in res.costs],
                     op_actions=[{k: _scalar(v) for k, v in c.actions.items()} for c in res.costs])
    if e.op_j is None:
        return rpt
    per_op = e.op_at(0)
    if op_cycles is not None:  # another engine's times: re-time the static share
        t = np.asarray(op_cycles, dtype=float) / pts.freq_hz[0]
        static = d["static_w"] or 0.0
        for k, o in enumerate(per_op):
            o["by_class_j"]["static"] = static * t[k] * rep[k]
            o["energy_j"] = sum(o["by_class_j"].values())
        time = float((t * rep).sum())
        rpt.latency_s = time
        rpt.energy_j = sum(o["energy_j"] for o in per_op)
        rpt.energy_per_token_j = rpt.energy_j / cg.tokens
        rpt.avg_power_w = rpt.energy_j / time if time > 0 else 0.0
    rpt.op_energy_j = [o["energy_j"] for o in per_op]
    rpt.op_breakdown_j = [o["by_class_j"] for o in per_op]
    return rpt
