"""What ``qesim explore`` computes for one state of its knobs (no web framework here, so it is
tested directly): the workload's graph, the preset with the knob updates applied, the estimate,
its energy/area/cost, the per-op rows and the roofline points.

Knobs (units in names): ``hbm_gbps`` (HBM peak bandwidth), ``mac_scale`` (factor on every MPE
MAC rate, mm and mv, as the sweep's ``scale.macs``), ``weight_bytes``/``act_bytes``/``out_bytes``
(on-chip buffers), ``frequency_mhz``. A knob left at None keeps the preset's value. Every knob is
a point field of the cost model (``qesim.perf.points``): a change re-evaluates the memoised
compiled graph at one point, it never lowers the graph again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from qesim.perf.terms.energy import CLASSES

SETTINGS = ("W16A16", "W8A8", "W4A8", "W4A6", "W4A16", "W3A16")
KNOBS = ("hbm_gbps", "mac_scale", "weight_bytes", "act_bytes", "out_bytes", "frequency_mhz")


@dataclass(frozen=True)
class Workload:
    model: str
    setting: str = "W4A8"
    method: str = "qe"
    stage: str = "prefill"
    seq_len: int = 128
    context_len: int = 0
    batch: int = 1


@lru_cache(maxsize=64)
def workload_graph(w: Workload):
    from qesim.graph.builders import build_graph

    return build_graph(w.model, stage=w.stage, seq_len=w.seq_len, context_len=w.context_len, batch=w.batch,
                       setting=w.setting, method=w.method)


def point_overrides(hw, knobs: dict) -> dict:
    """Point-field overrides (``qesim.perf.points.HwPoints`` ``over``) for the knobs: every knob is a
    point field, so a knob move re-evaluates the compiled graph without lowering it again."""
    over: dict = {}
    if knobs.get("hbm_gbps") is not None:
        over["hbm.bandwidth_gbps"] = float(knobs["hbm_gbps"])
    if knobs.get("frequency_mhz") is not None:
        over["frequency_mhz"] = float(knobs["frequency_mhz"])
    for b in ("weight_bytes", "act_bytes", "out_bytes"):
        if knobs.get(b) is not None:
            over[f"buffers.{b}"] = float(int(knobs[b]))
    s = knobs.get("mac_scale")
    if s is not None and float(s) != 1.0:
        for mode in ("mm", "mv"):
            for i, r in enumerate(getattr(hw.mpe, mode)):
                over[f"mpe.{mode}.{i}.macs_per_cycle"] = r.macs_per_cycle * float(s)
    return over


def hw_updates(hw, knobs: dict) -> dict:
    """The same knobs as dotted-path updates for ``HardwareConfig.with_updates`` (a YAML to hand to
    ``qesim estimate --hw``)."""
    return {k: (int(v) if k.startswith("buffers.") else v) for k, v in point_overrides(hw, knobs).items()}


def evaluate(w: Workload, hw_name: str, knobs: dict) -> dict:
    """Everything the page shows for one knob state (plain Python values): the compiled graph of the
    preset (memoised) evaluated at one point with the knobs as point fields."""
    from qesim.hw.loader import load_hw
    from qesim.perf.estimate import compiled_graph, estimate_from_result
    from qesim.perf.points import HwPoints

    base = load_hw(hw_name)
    g = workload_graph(w)
    over = point_overrides(base, knobs)
    cg = compiled_graph(g, base)
    pts = HwPoints(base, 1, over) if over else HwPoints.of(base)
    res = cg.evaluate(pts, detail=True)
    est = estimate_from_result(res, 0, graph_name=g.name, hw_name=base.name, stage=cg.stage, tokens=cg.tokens)
    d = est.to_dict()
    e = d["energy"]
    freq = float(pts.freq_hz[0])
    peak_macs = float(pts.peak_mm_rate()[0]) * freq
    bw = float(pts.bpc["hbm"][0]) * freq
    ops = []
    for o, oe in zip(d["ops"], e["ops"] or [None] * len(d["ops"])):
        t = o["cycles"] / freq
        ops.append({
            "name": o["name"], "kind": o["kind"], "repeat": o["repeat"], "time_us": t * 1e6,
            "share_pct": 100.0 * o["total_cycles"] / d["cycles"] if d["cycles"] else 0.0,
            "bytes": o["bytes"], "macs": o["macs"], "bound": o["bound"], "tile": o["tile"],
            "energy_uj": None if oe is None else oe["energy_j"] / o["repeat"] * 1e6,
            # roofline: operational intensity (MAC per off-chip byte) and achieved MAC/s of one call
            "intensity": o["macs"] / o["bytes"] if o["bytes"] > 0 else None,
            "macs_per_s": o["macs"] / t if t > 0 else 0.0,
        })
    by_kind_class: dict = {}
    for o, oe in zip(d["ops"], e["ops"]):
        acc = by_kind_class.setdefault(o["kind"], {c: 0.0 for c in CLASSES})
        for c, v in oe["by_class_j"].items():
            acc[c] = acc.get(c, 0.0) + v
    k = {"hbm_gbps": float(over.get("hbm.bandwidth_gbps", base.hbm.bandwidth_gbps)),
         "mac_scale": float(knobs.get("mac_scale") or 1.0), "weight_bytes": int(pts.buf["weight_bytes"][0]),
         "act_bytes": int(pts.buf["act_bytes"][0]), "out_bytes": int(pts.buf["out_bytes"][0]),
         "frequency_mhz": float(pts.freq_mhz[0])}
    return {
        "hw": base.name, "latency_s": d["latency_s"], "tokens_per_s": d["tokens_per_s"], "bound": d["bound"],
        "cycles": d["cycles"], "energy_model": e["model"], "energy_per_token_j": e["energy_per_token_j"],
        "avg_power_w": e["avg_power_w"], "area_mm2": e["area_mm2"], "cost_usd": e["cost_usd"],
        "ops": ops, "energy_by_kind_class_j": by_kind_class, "peak_macs_per_s": peak_macs,
        "hbm_bytes_per_s": bw, "warnings": d["warnings"], "knobs": k,
    }


def preset_knobs(hw_name: str) -> dict:
    """The knob values of an unmodified preset."""
    from qesim.hw.loader import load_hw

    hw = load_hw(hw_name)
    return {"hbm_gbps": hw.hbm.bandwidth_gbps, "mac_scale": 1.0, "weight_bytes": hw.buffers.weight_bytes,
            "act_bytes": hw.buffers.act_bytes, "out_bytes": hw.buffers.out_bytes,
            "frequency_mhz": hw.frequency_mhz}


def sweep_front(df, x: str, y: str, filters: Optional[dict] = None, z: Optional[str] = None):
    """(filtered rows, their Pareto front minimising x, y and, if given, z) of a sweep table
    (:func:`qesim.dse.pareto.pareto_front`)."""
    from qesim.dse.pareto import pareto_front

    f = df
    for col, vals in (filters or {}).items():
        if vals:
            f = f[f[col].astype(str).isin([str(v) for v in vals])]
    objs = [c for c in dict.fromkeys([x, y, z]) if c]
    f = f.dropna(subset=objs)
    return f, pareto_front(f, {c: "min" for c in objs})
