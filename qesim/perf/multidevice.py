"""Multi-device estimates: per-device shard graphs (qesim.graph.parallel) costed by the one cost
model, plus the collectives (qesim.perf.terms.collectives) over ``HardwareConfig.interconnect``.

Time of one pass (seconds):

- TP (x EP): ``device_s`` (the shard graph on one device, by the chosen engine) + ``collective_s``
  (every all-reduce / all-gather / all-to-all of the pass, summed: communication is assumed *not*
  overlapped with compute, the conservative reading; Megatron-LM also runs them on the critical path).
- PP: the batch is cut into ``m`` micro-batches (default: one per sequence, so a batch-1 request
  has m = 1); each stage's time per micro-batch ``t_s`` (its shard graph at batch / m, plus its TP
  collectives); total = ``(m + p - 1) * max_s t_s + (p - 1) * p2p`` (GPipe fill/drain), of which the
  bubble is ``(p - 1) * max_s t_s``.

The cycle engine, when chosen, replays the schedule of ONE device's shard graph (and of each PP
stage separately); the collectives and the pipeline composition are added by these formulas, not
simulated.

Energy (joules per pass, :func:`system_energy`): every device is powered for the whole pass. Each
device adds its shard's dynamic energy (the cost model's per-op energy minus its static part) once
per micro-batch, and its static power (board power for configs that only publish that) times the
pass latency, so collectives and the pipeline bubble cost static power on every device. Link
energy of the collectives is not modelled (no sourced pJ/bit for the interconnects here): the
result says so.

Footprint (bytes per device, :func:`device_footprint`): weights of the shard (bits x elements,
density, group scales ignored), adapters, embedding tables (unless tied), MoE experts held, and the
KV cache (language attention only) at the end of the pass. Activations are not counted (they are a
few MB at these shapes). ``fits`` compares it with the memory that holds the weights (HBM, plus DDR
for tensors placed in DDR).
"""

from __future__ import annotations

import math

import numpy as np
from dataclasses import asdict
from typing import Optional

from qesim.errors import InputError
from qesim.graph.ir import AttentionOp, EmbeddingOp, LayerGraph, LinearOp, MoEOp
from qesim.graph.parallel import Comm, ParallelPlan, ep_shard, parse_parallel, pp_stages, tp_shard
from qesim.perf.terms import collectives as C

__all__ = ["device_footprint", "device_capacity", "estimate_parallel", "parallel_points", "auto_plan",
           "system_energy", "parallel_structure", "compose"]


def _linear_weight_bytes(op: LinearOp) -> float:
    if op.weight_shared_with:
        return 0.0
    dens = op.weight_density if isinstance(op.weight_density, (int, float)) else 1.0
    w = op.in_features * op.out_features * dens * op.weight_bits / 8.0
    ad = op.adapters
    if ad is not None:
        K, N = op.in_features, op.out_features
        el = ad.shared_rank * (K + N) + ad.routed_experts * ad.routed_rank * (K + N)
        if ad.router and ad.routed_experts:
            el += K * ad.routed_experts
        w += el * ad.adapter_bits / 8.0
    return w * op.repeat


def device_footprint(graph: LayerGraph) -> dict:
    """Bytes one device holds for ``graph`` (its shard): ``weights``, ``kv_cache``, ``total``, and
    ``by_memory`` placement-free (the caller maps them to memories)."""
    weights = embed = kv = 0.0
    for op in graph.ops:
        if isinstance(op, LinearOp):
            weights += _linear_weight_bytes(op)
        elif isinstance(op, MoEOp):
            per_expert = op.mats * op.hidden * op.expert_intermediate
            weights += op.repeat * (op.experts * per_expert * op.weight_bits / 8.0
                                    + op.mats * op.hidden * op.shared_width * op.weight_bits / 8.0
                                    + op.hidden * op.experts * op.gate_bits / 8.0)
        elif isinstance(op, EmbeddingOp):
            embed += op.vocab * op.hidden * op.bits / 8.0
        elif isinstance(op, AttentionOp) and op.component == "language":
            kv += op.repeat * 2.0 * op.batch * op.kv_heads * op.head_dim * op.kv_len * op.kv_bits / 8.0
    return dict(weights=weights, embeddings=embed, kv_cache=kv, total=weights + embed + kv)


def device_capacity(hw) -> float:
    """Bytes of the off-chip memory that holds the weights on one device (``placement.weights``)."""
    return hw.memory(hw.placement.weights).capacity_gib * 2**30


def memory_need(fp: dict, hw) -> dict:
    """Bytes needed per memory (hbm, ddr) by a device footprint, from the config's placement."""
    need = {"hbm": 0.0, "ddr": 0.0}
    need[hw.placement.weights] += fp["weights"]
    need[hw.placement.embeddings] += fp["embeddings"]
    need[hw.placement.kv_cache] += fp["kv_cache"]
    return need


def _fits(fp: dict, hw) -> bool:
    need = memory_need(fp, hw)
    hbm = hw.hbm.capacity_gib * 2**30
    ddr = hw.ddr.capacity_gib * 2**30 if hw.ddr is not None else 0.0
    return need["hbm"] <= hbm and need["ddr"] <= ddr


def _comm_s(comms: list[Comm], n: int, ic) -> dict:
    out: dict = {}
    for c in comms:
        if c.kind == "allreduce":
            t = C.allreduce_s(c.nbytes, n, ic.bytes_per_s, ic.latency_s, ic.topology)
        elif c.kind == "allgather":
            t = C.allgather_s(c.nbytes, n, ic.bytes_per_s, ic.latency_s, ic.topology)
        else:
            t = C.all_to_all_s(c.nbytes, n, ic.bytes_per_s, ic.latency_s, ic.topology)
        out[c.component] = out.get(c.component, 0.0) + float(t) * c.count
    return out


def _shard(graph: LayerGraph, plan: ParallelPlan):
    g, comms_tp = tp_shard(graph, plan.tp)
    g, comms_ep = ep_shard(g, plan.ep)
    return g, comms_tp, comms_ep


def _with_batch(graph: LayerGraph, model_builder, batch: int) -> LayerGraph:
    return model_builder(batch)


def parallel_structure(graph: LayerGraph, hw, plan: ParallelPlan, *, micro_graph=None,
                       micro_batches: Optional[int] = None):
    """The structure of a multi-device pass: ``(m, stages, p2p_s)`` with ``m`` micro-batches, per
    pipeline stage ``(shard graph of one device, collective seconds by component)`` and the
    stage-to-stage send time (seconds). Interconnect fields are structural, so the collective
    times are numbers, not per-point arrays. An :class:`InputError` for a plan the config cannot run."""
    n = plan.devices
    if n > 1 and hw.interconnect is None:
        raise InputError(f"hardware {hw.name!r} has no interconnect section: --devices > 1 needs one "
                         "(link bandwidth, latency, topology)")
    ic = hw.interconnect
    if n > 1 and n > ic.max_devices:
        raise InputError(f"--devices {n} exceeds interconnect.max_devices = {ic.max_devices} of {hw.name!r}")
    m = 1
    g_mb = graph
    if plan.pp > 1:
        m = micro_batches or graph.batch
        if graph.batch % m:
            raise InputError(f"batch {graph.batch} is not divisible into {m} micro-batches")
        if m > 1 and micro_graph is not None:
            g_mb = micro_graph(graph.batch // m)
        elif m > 1:
            m = 1
    stage_graphs, p2p_bytes = pp_stages(g_mb, plan.pp)
    stages = []
    for sg in stage_graphs:
        dg, ctp, cep = _shard(sg, plan)
        comm = _comm_s(ctp, plan.tp, ic) if plan.tp > 1 else {}
        for k, v in (_comm_s(cep, plan.ep, ic) if plan.ep > 1 else {}).items():
            comm[k] = comm.get(k, 0.0) + v
        stages.append((dg, comm))
    p2p = float(C.p2p_s(p2p_bytes, ic.bytes_per_s, ic.latency_s)) if plan.pp > 1 else 0.0
    return m, stages, p2p


def compose(t_stage: list, pp: int, m: int, p2p_s: float):
    """``(total, bubble)`` seconds of a pass whose stages take ``t_stage`` (device + collectives,
    per micro-batch; numbers or per-point arrays): one stage alone, else GPipe
    ``(m + p - 1) * max t_s + (p - 1) * p2p`` with bubble ``(p - 1) * max t_s``."""
    if pp == 1:
        return t_stage[0], 0.0 * t_stage[0]
    worst = np.maximum.reduce([np.asarray(t, dtype=float) for t in t_stage])
    return C.pipeline_s(worst, pp, m) + (pp - 1) * p2p_s, (pp - 1) * worst


def estimate_parallel(graph: LayerGraph, hw, plan: ParallelPlan, *, engine: str = "analytical",
                      micro_graph=None, micro_batches: Optional[int] = None) -> dict:
    """The multi-device estimate of ``graph`` under ``plan`` (see the module docstring).

    ``micro_graph(b)`` rebuilds the request at ``b`` sequences (PP micro-batches); without it the
    pipeline runs the whole batch as one micro-batch."""
    from qesim.perf.engines import run_engine

    n = plan.devices
    ic = hw.interconnect
    m, stages, p2p = parallel_structure(graph, hw, plan, micro_graph=micro_graph, micro_batches=micro_batches)
    rows = []
    for s, (dg, comm) in enumerate(stages):
        est = run_engine(engine, dg, hw)
        fp = device_footprint(dg)
        rows.append(dict(stage=s, device_s=est.latency_s, collective_s=sum(comm.values()), collective_by_component=comm,
                         footprint=fp, fits=_fits(fp, hw), bound=est.bound, graph=dg,
                         energy=getattr(est, "energy", None)))
    t_stage = [r["device_s"] + r["collective_s"] for r in rows]
    p = plan.pp
    total, bubble = (float(x) for x in compose(t_stage, p, m, p2p))
    tokens = graph.batch * graph.seq_len
    worst = max(rows, key=lambda r: r["footprint"]["total"])
    energy = system_energy([r["energy"] for r in rows], plan.tp * plan.ep, m, total, tokens)
    return dict(**energy,
        devices=n, parallel=plan.label(), tp=plan.tp, pp=plan.pp, ep=plan.ep, micro_batches=m, engine=engine,
        latency_s=total, tokens_per_s=tokens / total if total > 0 else float("inf"),
        device_s=sum(r["device_s"] for r in rows) if p == 1 else max(r["device_s"] for r in rows),
        collective_s=sum(r["collective_s"] for r in rows) * (m if p > 1 else 1),   # summed over stages x micro-batches
        pipeline_bubble_s=bubble, p2p_s=(p - 1) * p2p,
        bubble_fraction=float(C.bubble_fraction(p, m)),
        per_stage=[dict(stage=r["stage"], device_s=r["device_s"], collective_s=r["collective_s"], bound=r["bound"],
                        collective_by_component=r["collective_by_component"],
                        footprint_bytes=r["footprint"]["total"], fits=r["fits"]) for r in rows],
        footprint_bytes_per_device=worst["footprint"]["total"], footprint=worst["footprint"],
        need_bytes_by_memory=memory_need(worst["footprint"], hw),
        capacity_bytes_by_memory={"hbm": hw.hbm.capacity_gib * 2**30,
                                  "ddr": hw.ddr.capacity_gib * 2**30 if hw.ddr is not None else 0.0},
        capacity_bytes_per_device=device_capacity(hw), fits=all(r["fits"] for r in rows),
        interconnect=dict(ic.model_dump()) if ic is not None else None,
        cycle_model_note=("cycle engine: each device's shard schedule is replayed; collectives and the pipeline "
                          "are added analytically, not simulated") if engine == "cycle" else None,
    )


def system_energy(stages: list, devices_per_stage: int, micro_batches: int, latency_s, tokens: int) -> dict:
    """Energy of a multi-device pass (module docstring), in joules.

    Args:
        stages: per pipeline stage, the energy of one device's shard over one micro-batch: a dict
            with ``energy_j``, ``static_w`` and ``by_class_j["static"]`` (numbers, or per-point arrays;
            None if not known), e.g. the ``energy`` object of an estimate.
        devices_per_stage: devices running each stage's shard (tp x ep).
        micro_batches: micro-batches each stage runs.
        latency_s: the pass latency (seconds; number or per-point array): every device draws its
            static power for all of it.
        tokens: tokens of the pass (for the per-token figure).
    """
    if not stages or any(e is None or e.get("energy_j") is None for e in stages):
        return dict(energy_j=None, dynamic_j=None, static_j=None, energy_per_token_j=None, avg_power_w=None,
                    energy_model="none", energy_note="energy not known for this config")
    scalar = np.ndim(latency_s) == 0 and all(np.ndim(e["energy_j"]) == 0 for e in stages)
    dyn = static = 0.0
    for e in stages:
        ej = np.asarray(e["energy_j"], dtype=float)
        d = ej - np.asarray(e.get("by_class_j", {}).get("static", 0.0), dtype=float)
        d = np.where(np.abs(d) <= 1e-9 * np.abs(ej), 0.0, d)  # board-power model: all static (float residue)
        dyn = dyn + devices_per_stage * micro_batches * d
        sw = e.get("static_w")
        static = static + devices_per_stage * np.asarray(0.0 if sw is None else sw, dtype=float) * latency_s
    total = dyn + static
    lat = np.asarray(latency_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        power = np.where(lat > 0, total / np.where(lat > 0, lat, 1.0), np.nan)
    out = dict(energy_j=total, dynamic_j=dyn, static_j=static,
               energy_per_token_j=total / tokens if tokens else None, avg_power_w=power)
    if scalar:
        out = {k: (None if v is None else float(v)) for k, v in out.items()}
        if out["avg_power_w"] is not None and math.isnan(out["avg_power_w"]):
            out["avg_power_w"] = None
    out.update(energy_model=stages[0].get("model"),
               energy_note="link energy of the collectives not modelled (no sourced pJ/bit)")
    return out


def parallel_points(graph: LayerGraph, hw, plan: ParallelPlan, pts, compiled_of, *, micro_graph=None,
                    micro_batches: Optional[int] = None, structure=None) -> dict:
    """A multi-device pass at every point of ``pts`` (HwPoints of ``hw``'s structure): the same
    structure and composition as :func:`estimate_parallel`, each stage's shard costed by the
    vectorised cost model (``compiled_of(graph)`` -> its CompiledGraph). Per-point arrays (seconds,
    cycles of the point's clock, bytes and busy cycles of one device of the first stage, energy of
    the system); numbers for what the structure fixes (footprint, fits). ``structure``: the
    :func:`parallel_structure` of the same arguments, if the caller keeps it across calls."""
    m, stages, p2p = structure or parallel_structure(graph, hw, plan, micro_graph=micro_graph,
                                                     micro_batches=micro_batches)
    res = [compiled_of(dg).evaluate(pts) for dg, _ in stages]
    coll = [sum(comm.values()) for _, comm in stages]
    t_stage = [r.latency_s + c for r, c in zip(res, coll)]
    total, bubble = compose(t_stage, plan.pp, m, p2p)
    device_s = res[0].latency_s if plan.pp == 1 else np.maximum.reduce([r.latency_s for r in res])
    collective_s = sum(coll) * (m if plan.pp > 1 else 1)
    tokens = graph.batch * graph.seq_len
    energies = []
    for r in res:
        e = r.energy
        if e is None or e.total_j is None:
            energies.append(None)
            continue
        st = e.by_class_j.get("static")
        energies.append(dict(energy_j=e.total_j, static_w=e.static_w, model=e.model,
                             by_class_j={"static": np.asarray(st, dtype=float).sum(axis=0) if st is not None else 0.0}))
    energy = system_energy(energies, plan.tp * plan.ep, m, total, tokens)
    fps = [device_footprint(dg) for dg, _ in stages]
    worst = max(fps, key=lambda f: f["total"])
    e0 = res[0].energy
    return dict(latency_s=total, cycles=total * pts.freq_hz, tokens=tokens, device_s=device_s,
                collective_s=collective_s, bubble_s=bubble, first=res[0],
                bound=np.where(collective_s > device_s, "collective", res[0].bound),
                energy=energy, area_mm2=None if e0 is None or e0.area_mm2 is None else e0.area_mm2 * plan.devices,
                cost_usd=None if e0 is None or e0.cost_usd is None else e0.cost_usd * plan.devices,
                need_bytes_by_memory=memory_need(worst, hw), fits=all(_fits(f, hw) for f in fps))


def _valid_tp(graph: LayerGraph, tp: int) -> bool:
    try:
        tp_shard(graph, tp)
        return True
    except InputError:
        return False


def auto_plan(graph: LayerGraph, hw, *, parallel: Optional[str] = None, max_devices: Optional[int] = None) -> ParallelPlan:
    """The fewest devices whose per-device footprint fits (``--devices auto``). ``parallel`` None or
    ``tp*pp``: TP up to 8 (a power of two the heads divide by) first, then PP; ``tp`` / ``pp`` / ``ep``:
    that axis only. Ties at the same device count are not searched further (the first fitting plan)."""
    lim = max_devices or (hw.interconnect.max_devices if hw.interconnect is not None else 1)
    axis = (parallel or "tp*pp").lower().replace("x", "*")
    L = int(graph.meta.get("layers") or 1)
    for n in range(1, lim + 1):
        cands = []
        if axis in ("tp", "ep", "pp"):
            cands = [ParallelPlan(**{axis: n})]
        else:
            for tp in (8, 4, 2, 1):
                if n % tp == 0 and n // tp <= L:
                    cands.append(ParallelPlan(tp=tp, pp=n // tp))
        for plan in cands:
            try:
                if plan.pp > L:
                    continue
                stages, _ = pp_stages(graph, plan.pp)
                ok = True
                for sg in stages:
                    dg, _, _ = _shard(sg, plan)
                    if not _fits(device_footprint(dg), hw):
                        ok = False
                        break
                if ok:
                    return plan
            except InputError:
                continue
    raise InputError(f"{graph.model} does not fit on up to {lim} devices of {hw.name!r} "
                     f"(parallel {axis}); per-device capacity {device_capacity(hw) / 1e9:.1f} GB")
