"""Analytical model: layer graph + hardware config -> schedule -> per-op cycles, bytes, bound.

``plan_graph`` lowers every op to an :class:`OpSchedule` (tiles, bytes per memory, MPE and SFU
cycles); ``estimate_graph`` times it with the pipeline formula of :mod:`qesim.perf.timing`.
The cycle model (``qesim.sim``) replays the same ``GraphSchedule``.

Cost rules (each switch is a field of the hardware config's ``policy``):

Linear y = x W (+ adapters), M tokens, K = in, N = out:
- weights: K*N*w_bits/8 * kept (N:M sparsity) + sparse index bits, re-read as the tiling needs;
  quantization metadata: per-output-channel scales (N * scale_bits) and per-token activation
  scales (M * scale_bits) if ``count_channel_scales``; group-wise scales + zero-points
  (N * ceil(K/g) * (scale_bits + w_bits if asymmetric)) if ``count_group_metadata``.
- activations: x read at act_bits and y written at out_bits when the stage's
  ``activations_offchip`` is set; otherwise they stay in on-chip buffers (FlightLLM decode).
- adapters: shared A,B; routed A,B of the experts the batch touches; the router (K x Nr) —
  all at adapter_bits, loaded once per call unless ``adapters_resident``.
- compute: padded MACs / MAC-rate(mode, w_bits, a_bits); adapter and router MACs at
  MAC-rate(mode, adapter_bits, a_bits). MV mode when M <= ``mpe.mv_max_rows``.
  ``compute_hidden`` for the stage: MPE time is taken as hidden behind memory (idealised MPE).
- dequantization of group-wise weights happens in the load path (FlightLLM's MMU quantization
  units), costing no extra cycles.

Attention: QK^T and PV on the MPE at ``policy.attention_bits`` (causal prefill counts only the
unmasked half), softmax on the SFU; K/V read from the cache once per KV head (GQA shares it),
new K/V rows written at kv_bits; Q in / O out off-chip only if activations are off-chip.

SFU ops: cycles per element from the SFU table (two-pass ops reduce first); bytes only if
activations are off-chip. Embedding: a gather of tokens x hidden from its memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Optional

import pandas as pd

from qesim.graph.ir import AttentionOp, EmbeddingOp, LayerGraph, LinearOp, LowRankAdapters, SfuOp
from qesim.hw.config import HardwareConfig
from qesim.perf.fusion import fused_deltas, fusion_plan, sfu_traffic
from qesim.perf.planner import GemmProblem, plan_gemm, traffic, _pad
from qesim.perf.schedule import GraphSchedule, OpSchedule
from qesim.perf.timing import OpTiming, op_timing


# ----------------------------------------------------------------------------- helpers
def expected_touched(n_experts: int, tokens: int, active: int = 1, freqs: Optional[list[float]] = None) -> float:
    """Expected distinct experts touched by ``tokens`` tokens each routed to ``active`` experts.

    Uniform routing: E * (1 - (1 - k/E)^s). With measured frequencies p_i (top-1 shares):
    sum_i 1 - (1 - p_i)^(s*k) (each token-slot picks expert i with probability p_i).
    """
    if n_experts <= 0 or tokens <= 0:
        return 0.0
    if freqs:
        return float(sum(1.0 - (1.0 - min(max(p, 0.0), 1.0)) ** (tokens * active) for p in freqs))
    k = min(active, n_experts)
    return n_experts * (1.0 - (1.0 - k / n_experts) ** tokens)


def touched_experts(ad: LowRankAdapters, tokens: int) -> float:
    """Distinct routed experts a batch of ``tokens`` tokens touches (graph value > measured > model)."""
    if not ad.routed_experts:
        return 0.0
    if ad.touched_experts is not None:
        return min(float(ad.touched_experts), float(ad.routed_experts))
    if ad.routing is not None:
        if ad.routing.touched_per_batch is not None and ad.routing.batch_tokens == tokens:
            return float(ad.routing.touched_per_batch)
        return expected_touched(ad.routed_experts, tokens, ad.active_per_token, ad.routing.frequencies())
    return expected_touched(ad.routed_experts, tokens, ad.active_per_token)


def adapter_params(ad: LowRankAdapters, K: int, N: int, tokens: int) -> tuple[float, float]:
    """(parameters loaded per call for a batch of ``tokens``, parameters stored in total)."""
    shared = ad.shared_rank * (K + N)
    per_expert = ad.routed_rank * (K + N)
    router = K * ad.routed_experts if (ad.router and ad.routed_experts) else 0
    loaded = shared + touched_experts(ad, tokens) * per_expert + router
    stored = shared + ad.routed_experts * per_expert + router
    return loaded, stored


def adapter_macs(ad: LowRankAdapters, K: int, N: int, M: int) -> float:
    routed = ad.active_per_token * ad.routed_rank * (K + N) if ad.routed_experts else 0
    router = K * ad.routed_experts if (ad.router and ad.routed_experts) else 0
    return float(M) * (ad.shared_rank * (K + N) + routed + router)


@dataclass(frozen=True)
class _Hw:
    """Numbers of a HardwareConfig the model reads, flattened once."""

    cfg: HardwareConfig
    bpc: dict

    @staticmethod
    def of(hw: HardwareConfig) -> "_Hw":
        bpc = {"hbm": hw.bytes_per_cycle("hbm")}
        bpc["ddr"] = hw.bytes_per_cycle("ddr") if hw.ddr is not None else float("inf")
        return _Hw(hw, bpc)


# ----------------------------------------------------------------------------- lowering
@dataclass(frozen=True)
class LinearTerms:
    """Tiling-independent quantities of a linear on a config (bytes, MACs; see module docstring)."""

    mode: str  # "mm" | "mv"
    arr: object  # ArrayShape of the mode
    kept: float  # stored/multiplied fraction of weights (N:M sparsity)
    w_bytes_elem: float  # bytes per weight element incl. sparse index and group metadata
    extra: float  # bytes loaded once per call: channel/token scales, streamed adapters
    ad_macs: float  # adapter + router MACs per call
    o_bytes: float  # output bytes written off-chip per call (0 if on chip)


def linear_terms(op: LinearOp, hw: HardwareConfig, stage: str) -> LinearTerms:
    """Bytes and MACs of ``op`` that do not depend on its tiling (shared with the DSE fast path)."""
    pol = hw.policy
    sp = hw.stage_policy(stage)
    M, K, N = op.tokens, op.in_features, op.out_features
    mode = "mv" if M <= hw.mpe.mv_max_rows else "mm"
    arr = hw.mpe.mv_array if mode == "mv" else hw.mpe.mm_array
    quant_w = op.weight_bits < 16
    kept = hw.mpe.sparsity.kept_fraction(op.weight_density)
    # sparse-index metadata per kept weight: a position index, or a per-block bitmask (1 bit per
    # dense element = 1/kept bits per kept weight) when that is cheaper
    idx_bits = min(hw.mpe.sparsity.index_bits_per_kept_weight, 1.0 / kept) if kept < 1.0 else 0.0
    w_bits_elem = op.weight_bits * kept + idx_bits * kept
    meta_w = 0.0  # metadata bits per weight element
    if quant_w and op.group_size != -1 and pol.count_group_metadata:
        zero_bits = 0 if op.weight_symmetric else op.weight_bits
        meta_w = (pol.scale_bits + zero_bits) / op.group_size
    extra = 0.0
    if pol.count_channel_scales:
        if quant_w and op.group_size == -1:
            extra += N * pol.scale_bits / 8.0
        if op.act_bits < 16 and op.act_granularity == "per_token_dynamic" and sp.activations_offchip:
            extra += M * pol.scale_bits / 8.0
    ad = op.adapters
    ad_macs = 0.0
    if ad is not None:
        loaded, _ = adapter_params(ad, K, N, M)
        if not pol.adapters_resident:
            extra += loaded * ad.adapter_bits / 8.0
        ad_macs = adapter_macs(ad, K, N, M)
    o_bytes = M * N * op.out_bits / 8.0 if sp.activations_offchip else 0.0
    return LinearTerms(mode, arr, kept, (w_bits_elem + meta_w) / 8.0, extra, ad_macs, o_bytes)


def _linear(op: LinearOp, hw: HardwareConfig, h: _Hw, stage: str) -> OpSchedule:
    pol = hw.policy
    sp = hw.stage_policy(stage)
    M, K, N = op.tokens, op.in_features, op.out_features
    t = linear_terms(op, hw, stage)
    mode, arr, kept, w_bytes_elem, extra, ad_macs, o_bytes = (
        t.mode, t.arr, t.kept, t.w_bytes_elem, t.extra, t.ad_macs, t.o_bytes)
    ad = op.adapters
    rate = hw.mpe.rate(mode, op.weight_bits, op.act_bits)
    ad_rate = hw.mpe.rate(mode, ad.adapter_bits, op.act_bits) if ad is not None else rate
    ad_cycles = ad_macs / ad_rate
    same = hw.placement.weights == hw.placement.activations
    prob = GemmProblem(
        M=M, K=K, N=N, w_bytes_per_elem=w_bytes_elem, a_bytes_per_elem=op.act_bits / 8.0,
        o_bytes_total=o_bytes, x_offchip=sp.activations_offchip, extra_bytes=extra,
        w_buf=hw.buffers.weight_bytes, a_buf=hw.buffers.act_bytes, o_buf=hw.buffers.out_bytes,
        double_buffered=pol.double_buffering, pm=arr.m, pk=arr.k, pn=arr.n,
        macs_per_cycle=rate / kept if kept < 1 else rate, extra_cycles=ad_cycles,
        compute_hidden=sp.compute_hidden, w_bpc=h.bpc[hw.placement.weights],
        a_bpc=h.bpc[hw.placement.activations], same_memory=same, mode=mode,
    )
    plan = plan_gemm(prob)
    w_b, x_b = traffic(prob, plan)
    padded = float(_pad(M, plan.tm, arr.m) * _pad(K, plan.tk, arr.k) * _pad(N, plan.tn, arr.n))
    mpe = padded * kept / rate + ad_cycles
    load = {hw.placement.weights: w_b + extra}
    load[hw.placement.activations] = load.get(hw.placement.activations, 0.0) + x_b
    store = {hw.placement.activations: o_bytes}
    return OpSchedule(
        name=op.name, kind="linear", repeat=op.repeat, steps=plan.steps, load_bytes=_clean(load),
        store_bytes=_clean(store), mpe_cycles=mpe, sfu_cycles=0.0, compute_hidden=sp.compute_hidden,
        double_buffered=pol.double_buffering, sfu_overlaps=pol.sfu_overlaps_mpe,
        macs=int(M * K * N * kept + ad_macs), tile=plan,
    )


def _clean(d: dict) -> dict:
    return {k: float(v) for k, v in d.items() if v > 0}


def _sfu_cycles_per_element(func: str, hw: HardwareConfig) -> tuple[float, float]:
    """(cycles per element, cycles per row) on one SFU lane for a vector function."""
    s = hw.sfu
    e, r, q, red, rs = s.elementwise_cycles, s.reciprocal_cycles, s.rsqrt_cycles, s.reduce_cycles, s.exp_cycles
    table = {
        # max pass, exp + sum pass, scale pass; one reciprocal per row
        "softmax": (red + rs + red + e, r),
        # mean pass, variance pass, normalise (sub, mul) + affine (mul, add); one rsqrt per row
        "layernorm": (red + red + 4 * e, q),
        # sum of squares pass, normalise + weight multiply; one rsqrt per row
        "rmsnorm": (red + 2 * e, q),
        "silu": (rs + r + 2 * e, 0.0),  # x * 1/(1+exp(-x))
        "silu_mul": (rs + r + 3 * e, 0.0),
        "gelu": (rs + r + 6 * e, 0.0),  # tanh form via exp
        "relu": (e, 0.0),
        "eltwise_add": (e, 0.0),
        "eltwise_mul": (e, 0.0),
        "quantize": (red + 2 * e, r),  # absmax pass; scale + round pass; one reciprocal per row
        "dequantize": (e, 0.0),
        "rope": (3 * e, 0.0),  # x*cos + rot(x)*sin
    }
    return table[func]


def _sfu(op: SfuOp, hw: HardwareConfig, stage: str) -> OpSchedule:
    per_el, per_row = _sfu_cycles_per_element(op.func, hw)
    elems = op.rows * op.width
    cycles = (elems * per_el + op.rows * per_row) / hw.sfu.lanes
    if op.func == "quantize" and hw.policy.act_quant_unit == "mmu":
        cycles = 0.0  # quantization units on the memory path (FlightLLM MMU), not the SFU
    load, store = sfu_traffic(op, hw, stage)
    steps = max(1, min(op.rows, 64))
    return OpSchedule(
        name=op.name, kind="sfu", repeat=op.repeat, steps=steps, load_bytes=_clean(load),
        store_bytes=_clean(store), mpe_cycles=0.0, sfu_cycles=cycles, compute_hidden=False,
        double_buffered=hw.policy.double_buffering, sfu_overlaps=True, macs=0,
    )


def _attention(op: AttentionOp, hw: HardwareConfig, stage: str) -> OpSchedule:
    sp = hw.stage_policy(stage)
    pol = hw.policy
    b, H, Hkv, d, q, kv = op.batch, op.heads, op.kv_heads, op.head_dim, op.q_len, op.kv_len
    if op.causal:
        past = kv - q
        scores = q * past + q * (q + 1) / 2.0  # unmasked (query, key) pairs per head
    else:
        scores = float(q * kv)
    macs = 2.0 * b * H * scores * d  # QK^T and PV
    mode = "mv" if q <= hw.mpe.mv_max_rows else "mm"
    rate = hw.mpe.rate(mode, pol.attention_bits, op.act_bits)
    mpe = macs / rate
    per_el, per_row = _sfu_cycles_per_element("softmax", hw)
    sfu = (b * H * scores * per_el + b * H * q * per_row) / hw.sfu.lanes
    kvm = hw.placement.kv_cache
    kv_read = 2.0 * b * Hkv * kv * d * op.kv_bits / 8.0
    kv_write = 2.0 * b * Hkv * q * d * op.kv_bits / 8.0
    load = {kvm: kv_read}
    store = {kvm: kv_write}
    if sp.activations_offchip:
        am = hw.placement.activations
        load[am] = load.get(am, 0.0) + b * q * H * d * op.act_bits / 8.0
        store[am] = store.get(am, 0.0) + b * q * H * d * 16 / 8.0
    return OpSchedule(
        name=op.name, kind="attention", repeat=op.repeat, steps=max(1, b * Hkv), load_bytes=_clean(load),
        store_bytes=_clean(store), mpe_cycles=mpe, sfu_cycles=sfu,
        compute_hidden=sp.compute_hidden, double_buffered=pol.double_buffering,
        sfu_overlaps=pol.sfu_overlaps_mpe, macs=int(macs),
    )


def _embedding(op: EmbeddingOp, hw: HardwareConfig, stage: str) -> OpSchedule:
    sp = hw.stage_policy(stage)
    mem = hw.placement.embeddings
    load = {mem: op.tokens * op.hidden * op.bits / 8.0}
    store = {hw.placement.activations: op.tokens * op.hidden * 16 / 8.0} if sp.activations_offchip else {}
    return OpSchedule(
        name=op.name, kind="embedding", repeat=op.repeat, steps=max(1, min(op.tokens, 64)), load_bytes=_clean(load),
        store_bytes=_clean(store), mpe_cycles=0.0, sfu_cycles=0.0, compute_hidden=False,
        double_buffered=hw.policy.double_buffering, sfu_overlaps=True, macs=0,
    )


def plan_graph(graph: LayerGraph, hw: HardwareConfig) -> GraphSchedule:
    """Lower every op of ``graph`` to its schedule on ``hw``."""
    h = _Hw.of(hw)
    tokens = graph.batch * graph.seq_len
    gs = GraphSchedule(graph_name=graph.name, stage=graph.stage, tokens=tokens)
    resident_bytes = 0.0
    for op in graph.ops:
        if isinstance(op, LinearOp):
            gs.ops.append(_linear(op, hw, h, graph.stage))
            if op.adapters is not None and hw.policy.adapters_resident:
                _, stored = adapter_params(op.adapters, op.in_features, op.out_features, op.tokens)
                resident_bytes += stored * op.adapters.adapter_bits / 8.0 * op.repeat
        elif isinstance(op, AttentionOp):
            gs.ops.append(_attention(op, hw, graph.stage))
        elif isinstance(op, SfuOp):
            gs.ops.append(_sfu(op, hw, graph.stage))
        elif isinstance(op, EmbeddingOp):
            gs.ops.append(_embedding(op, hw, graph.stage))
        elif op.kind == "moe":  # mixture-of-experts FFN: qesim.perf.moe
            from qesim.perf.moe import plan_moe

            gs.ops.append(plan_moe(op, hw, graph.stage))
        else:  # pragma: no cover - the IR union is closed
            raise TypeError(f"no cost model for op kind {op.kind!r}")
    if hw.policy.sfu_fusion:
        gs.ops = _fuse(gs.ops, graph, hw)
    if resident_bytes > hw.buffers.adapter_bytes:
        gs.warnings.append(
            f"policy.adapters_resident: the graph's adapters need {resident_bytes / 2**20:.1f} MiB on chip, "
            f"buffers.adapter_bytes is {hw.buffers.adapter_bytes / 2**20:.1f} MiB"
        )
    return gs


def _fuse(ops: list, graph: LayerGraph, hw: HardwareConfig) -> list:
    """Fold fused SFU ops (``qesim.perf.fusion.fusion_plan``) into their MPE op's schedule: SFU
    cycles add to its ``sfu_cycles``, bytes change by ``fused_deltas``, and the op pipelines at the
    finer of the two step granularities (``max`` of the steps: the SFU streams the output row
    block by row block); the SFU ops disappear."""
    plan = fusion_plan(graph, hw)
    if not plan:
        return ops
    deltas = fused_deltas(graph, hw, plan)
    out = list(ops)
    for i, f in plan.items():
        t, s = out[f.into], ops[i]
        out[f.into] = replace(t, sfu_cycles=t.sfu_cycles + s.sfu_cycles, steps=max(t.steps, s.steps),
                              notes=t.notes + (f"fused {s.name}",))
    for j, (dl, ds) in deltas.items():
        t = out[j]
        load, store = dict(t.load_bytes), dict(t.store_bytes)
        for m, b in dl.items():
            load[m] = load.get(m, 0.0) + b
        for m, b in ds.items():
            store[m] = store.get(m, 0.0) + b
        out[j] = replace(t, load_bytes=_clean(load), store_bytes=_clean(store))
    return [o for k, o in enumerate(out) if k not in plan]


# ----------------------------------------------------------------------------- estimates
class GraphEstimate:
    """Totals and per-op table of one graph on one hardware config.

    Built from per-op ``rows`` (tuples in ``OP_COLUMNS`` order) or from an ``ops`` DataFrame with
    those columns. Totals are computed once; the DataFrame is built on first access of ``ops``.
    Units: cycles of ``frequency_hz``; bytes; seconds.
    """

    def __init__(self, graph: str, hw: str, stage: str, tokens: int, frequency_hz: float,
                 ops: Optional[pd.DataFrame] = None, warnings: Optional[list] = None,
                 rows: Optional[list] = None):
        if (ops is None) == (rows is None):
            raise ValueError("GraphEstimate needs exactly one of ops (DataFrame) or rows")
        self.graph, self.hw, self.stage, self.tokens = graph, hw, stage, tokens
        self.frequency_hz = frequency_hz
        self.warnings = list(warnings or [])
        self._ops = ops
        if rows is None:
            rows = list(ops[OP_COLUMNS].itertuples(index=False, name=None))
        self._rows = rows
        ix = {c: i for i, c in enumerate(OP_COLUMNS)}
        busy = {"compute": 0.0, "sfu": 0.0, "hbm": 0.0, "ddr": 0.0}
        total = 0.0
        mem_bytes = {"hbm": 0.0, "ddr": 0.0}
        for r in rows:
            rep = r[ix["repeat"]]
            total += r[ix["total_cycles"]]
            busy["compute"] += r[ix["mpe_busy_cycles"]] * rep
            busy["sfu"] += r[ix["sfu_cycles"]] * rep
            busy["hbm"] += r[ix["hbm_cycles"]] * rep
            busy["ddr"] += r[ix["ddr_cycles"]] * rep
            mem_bytes["hbm"] += r[ix["hbm_bytes"]] * rep
            mem_bytes["ddr"] += r[ix["ddr_bytes"]] * rep
        self._cycles = float(total)
        self._busy = {k: float(v) for k, v in busy.items()}
        self._bytes = {k: float(v) for k, v in mem_bytes.items()}

    @property
    def ops(self) -> pd.DataFrame:
        """Per-op table (columns ``OP_COLUMNS``), one row per op of the graph."""
        if self._ops is None:
            self._ops = pd.DataFrame.from_records(self._rows, columns=OP_COLUMNS)
        return self._ops

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
        ix = {c: i for i, c in enumerate(OP_COLUMNS)}
        ops = []
        for r in self._rows:
            g = lambda c: r[ix[c]]  # noqa: E731
            ops.append({
                "name": g("name"), "kind": g("kind"), "repeat": int(g("repeat")), "cycles": float(g("cycles")),
                "total_cycles": float(g("total_cycles")), "bytes": float(g("bytes")),
                "hbm_bytes": float(g("hbm_bytes")), "ddr_bytes": float(g("ddr_bytes")), "macs": int(g("macs")),
                "mpe_cycles": float(g("mpe_cycles")), "sfu_cycles": float(g("sfu_cycles")), "bound": g("bound"),
                "tile": g("tile"),
            })
        return {
            "graph": self.graph, "hw": self.hw, "stage": self.stage, "tokens": self.tokens,
            "cycles": self.cycles, "latency_s": self.latency_s, "tokens_per_s": self.tokens_per_s,
            "bound": self.bound, "bytes": self.bytes_by_memory, "utilization": self.utilization(),
            "warnings": list(self.warnings), "ops": ops,
        }


OP_COLUMNS = [
    "name", "kind", "repeat", "cycles", "total_cycles", "mpe_cycles", "mpe_busy_cycles", "sfu_cycles",
    "hbm_cycles", "ddr_cycles", "hbm_bytes", "ddr_bytes", "bytes", "macs", "steps", "bound", "tile",
]


def time_schedule(gs: GraphSchedule, hw: HardwareConfig) -> tuple[list, list]:
    """(schedules, timings) for every op."""
    h = _Hw.of(hw)
    return gs.ops, [op_timing(s, h.bpc) for s in gs.ops]


def estimate_schedule(gs: GraphSchedule, hw: HardwareConfig) -> GraphEstimate:
    scheds, timings = time_schedule(gs, hw)
    rows = []
    for s, t in zip(scheds, timings):
        rows.append((
            s.name, s.kind, s.repeat, t.cycles, t.cycles * s.repeat, s.mpe_cycles, t.mpe_cycles, t.sfu_cycles,
            t.mem_cycles.get("hbm", 0.0), t.mem_cycles.get("ddr", 0.0), s.mem_bytes("hbm"), s.mem_bytes("ddr"),
            s.total_bytes, s.macs, s.steps, t.bound, s.tile.describe() if s.tile else "",
        ))
    return GraphEstimate(graph=gs.graph_name, hw=hw.name, stage=gs.stage, tokens=gs.tokens,
                         frequency_hz=hw.frequency_hz, rows=rows, warnings=list(gs.warnings))


def estimate_graph(graph: LayerGraph, hw: HardwareConfig) -> GraphEstimate:
    """Analytical estimate of one pass of ``graph`` on ``hw``."""
    return estimate_schedule(plan_graph(graph, hw), hw)


def graph_cycles(graph: LayerGraph, hw: HardwareConfig) -> float:
    """Total cycles only (fast path for sweeps: no DataFrame)."""
    gs = plan_graph(graph, hw)
    _, timings = time_schedule(gs, hw)
    return float(sum(t.cycles * s.repeat for s, t in zip(gs.ops, timings)))


def speedup(base: LayerGraph, quant: LayerGraph, hw: HardwareConfig) -> float:
    """Latency of ``base`` (fp16) over latency of ``quant`` on the same config."""
    return graph_cycles(base, hw) / graph_cycles(quant, hw)
