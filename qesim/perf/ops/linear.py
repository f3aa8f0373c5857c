"""Linear ops y[M, N] = x[M, K] W[K, N] (+ low-rank adapters): bytes, MACs and the planner's tiling.

Cost rules (each switch is a field of the hardware config's ``policy``):

- weights: K*N*w_bits/8 * kept (N:M sparsity) + sparse index bits, re-read as the tiling needs;
  quantization metadata (:func:`group_metadata_bits`, :func:`channel_scale_bytes`): group-wise
  scales + zero-points, N * K/g * (scale_bits + w_bits if asymmetric), if
  ``count_group_metadata``; per-output-channel weight scales (N * scale_bits) and per-token
  activation scales (M * scale_bits) if ``count_channel_scales``.
- activations: x read at act_bits and y written at out_bits when the stage's
  ``activations_offchip`` is set; otherwise they stay in on-chip buffers (FlightLLM decode).
- adapters: shared A,B; routed A,B of the experts the batch touches; the router (K x Nr) —
  all at adapter_bits, loaded once per call unless ``adapters_resident``.
- compute: padded MACs / MAC-rate(mode, w_bits, a_bits); adapter and router MACs at
  MAC-rate(mode, adapter_bits, a_bits). MV mode when M <= ``mpe.mv_max_rows``.
  ``compute_hidden`` for the stage: MPE time is taken as hidden behind memory (idealised MPE).
- dequantization of weights stored below the MPE's input precision (the MAC-rate entry the
  product runs on): ``terms.dequant`` — free in the load path with ``unit: none`` (FlightLLM's
  MMU quantization units, and the default), else ``ops_per_weight`` per loaded weight element
  plus ``ops_per_group`` per group on ``sfu.lanes`` lanes, added to the op's SFU cycles
  (``unit: sfu``, GPU CUDA cores) or MPE cycles (``unit: mpe``) (:mod:`qesim.perf.terms.dequant`).
  With ``terms.dequant.pipelined: false`` a dequantizing linear is not double buffered: its
  memory and compute cycles add (a kernel whose warps load, then dequantize and multiply).

The tiling (tile sizes, loop order, re-reads, buffer fit) is :func:`qesim.perf.planner.plan_points`,
chosen per design point (buffers and rates are point fields).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qesim.graph.ir import LinearOp, LowRankAdapters
from qesim.hw.config import HardwareConfig, Policy
from qesim.perf.ops.base import Lowered, OpCost, lowering
from qesim.perf.ops.routing import expected_touched
from qesim.perf.planner import GemmSpec, plan_points
from qesim.perf.points import HwPoints
from qesim.perf.terms.dequant import dequant_cycles, dequant_ops


# ----------------------------------------------------------------------------- storage rules
def group_metadata_bits(K: int, w_bits: int, group_size: int, symmetric: bool, pol: Policy) -> float:
    """Metadata bits per weight element of a matrix quantized group-wise along K: one scale (+ one
    zero-point of ``w_bits`` if asymmetric) per ``group_size`` weights, i.e. (scale + zero) / g
    bits per weight (a partial last group is charged pro rata, so fewer weight bits never mean
    more bytes); 0 if not charged (``count_group_metadata``) or not group-wise."""
    if w_bits >= 16 or group_size == -1 or not pol.count_group_metadata:
        return 0.0
    zero_bits = 0 if symmetric else w_bits
    return (pol.scale_bits + zero_bits) / group_size


def channel_scale_bytes(N: int, w_bits: int, group_size: int, pol: Policy) -> float:
    """Bytes of per-output-channel weight scales of a per-channel quantized [K, N] matrix."""
    if w_bits < 16 and group_size == -1 and pol.count_channel_scales:
        return N * pol.scale_bits / 8.0
    return 0.0


def weight_bytes(K: int, N: int, w_bits: int, group_size: int, symmetric: bool, hw: HardwareConfig) -> float:
    """Stored bytes of one dense [K, N] weight at ``w_bits`` with the metadata the config charges."""
    pol = hw.policy
    return (K * N * (w_bits + group_metadata_bits(K, w_bits, group_size, symmetric, pol)) / 8.0
            + channel_scale_bytes(N, w_bits, group_size, pol))


# ----------------------------------------------------------------------------- adapters
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
    """Adapter + router MACs of one call on ``M`` tokens."""
    routed = ad.active_per_token * ad.routed_rank * (K + N) if ad.routed_experts else 0
    router = K * ad.routed_experts if (ad.router and ad.routed_experts) else 0
    return float(M) * (ad.shared_rank * (K + N) + routed + router)


# ----------------------------------------------------------------------------- terms
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
    """Bytes and MACs of ``op`` that do not depend on its tiling."""
    pol = hw.policy
    sp = hw.stage_policy(stage)
    M, K, N = op.tokens, op.in_features, op.out_features
    mode = "mv" if M <= hw.mpe.mv_max_rows else "mm"
    arr = hw.mpe.mv_array if mode == "mv" else hw.mpe.mm_array
    kept = hw.mpe.sparsity.kept_fraction(op.weight_density)
    # sparse-index metadata per kept weight: a position index, or a per-block bitmask (1 bit per
    # dense element = 1/kept bits per kept weight) when that is cheaper
    idx_bits = min(hw.mpe.sparsity.index_bits_per_kept_weight, 1.0 / kept) if kept < 1.0 else 0.0
    w_bits_elem = op.weight_bits * kept + idx_bits * kept
    meta_w = group_metadata_bits(K, op.weight_bits, op.group_size, op.weight_symmetric, pol)
    extra = channel_scale_bytes(N, op.weight_bits, op.group_size, pol)
    if (pol.count_channel_scales and op.act_bits < 16 and op.act_granularity == "per_token_dynamic"
            and sp.activations_offchip):
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


# ----------------------------------------------------------------------------- lowering
_PLAN_MEMO: dict = {}  # (GemmSpec, point values) -> PlanArrays, for small point sets


class LoweredLinear(Lowered):
    """A linear op on one structure; :meth:`cost` plans and costs it at every point."""

    def __init__(self, op: LinearOp, hw: HardwareConfig, stage: str):
        pol, sp = hw.policy, hw.stage_policy(stage)
        self.op, self.name, self.kind, self.repeat = op, op.name, "linear", op.repeat
        self.out_shape = (op.tokens, op.out_features)
        t = self.terms = linear_terms(op, hw, stage)
        self.wmem, self.amem = hw.placement.weights, hw.placement.activations
        self.hidden, self.db, self.overlaps = sp.compute_hidden, pol.double_buffering, pol.sfu_overlaps_mpe
        self.w_bits, self.a_bits = op.weight_bits, op.act_bits
        self.ad_bits = op.adapters.adapter_bits if op.adapters is not None else None
        self.macs = float(op.tokens * op.in_features * op.out_features * t.kept + t.ad_macs)
        self.spec = GemmSpec(
            M=op.tokens, K=op.in_features, N=op.out_features, w_bytes_per_elem=t.w_bytes_elem,
            a_bytes_per_elem=op.act_bits / 8.0, o_bytes_total=t.o_bytes, x_offchip=sp.activations_offchip,
            extra_bytes=t.extra, double_buffered=pol.double_buffering, pm=t.arr.m, pk=t.arr.k, pn=t.arr.n,
            compute_hidden=sp.compute_hidden, same_memory=self.wmem == self.amem, mode=t.mode)
        # dequantization (terms.dequant): weights stored below the precision the product runs at
        self.dequant = None
        dq = hw.terms.dequant
        fmt = dq.format(op.weight_bits) if dq.unit != "none" else None
        table = hw.mpe.mv if t.mode == "mv" else hw.mpe.mm
        ok = [r for r in table if r.w_bits >= op.weight_bits and r.a_bits >= op.act_bits]
        runs_at = max(ok, key=lambda r: r.macs_per_cycle).w_bits if ok else max(r.w_bits for r in table)
        if fmt is not None and op.weight_bits < runs_at:
            weights = float(op.in_features) * op.out_features * t.kept
            groups = weights / op.group_size if op.group_size != -1 else float(op.out_features)
            self.dequant = (dq.unit, dequant_ops(weights, groups, fmt.ops_per_weight, fmt.ops_per_group),
                            float(op.in_features) * op.out_features * t.w_bytes_elem)
        # terms.dequant.pipelined false: loads, dequant and MACs of a dequantizing kernel run one after the other
        self.db_cost = self.db and (self.dequant is None or dq.pipelined)
        self._resident = 0.0
        self.resident_adapters = pol.adapters_resident
        if op.adapters is not None and pol.adapters_resident:
            _, stored = adapter_params(op.adapters, op.in_features, op.out_features, op.tokens)
            self._resident = stored * op.adapters.adapter_bits / 8.0 * op.repeat

    def resident_bytes(self) -> float:
        return self._resident

    def signature(self):
        t = self.terms
        return ("linear", self.spec, t.mode, t.kept, t.w_bytes_elem, t.extra, t.ad_macs, t.o_bytes, self.w_bits, self.a_bits, self.ad_bits, self.wmem, self.amem,
                self.hidden, self.db, self.db_cost, self.overlaps, self.macs, self.dequant,
                self.op.out_bits)  # out_bits: energy actions

    def plan(self, pts: HwPoints):
        """(PlanArrays, rate, adapter cycles) at every point (memoised for small point sets)."""
        t = self.terms
        rate = pts.rate(t.mode, self.w_bits, self.a_bits)
        ad_rate = pts.rate(t.mode, self.ad_bits, self.a_bits) if self.ad_bits is not None else rate
        ad_cycles = t.ad_macs / ad_rate
        mpc = rate / t.kept if t.kept < 1 else rate
        b = pts.buf
        args = dict(w_buf=b["weight_bytes"], a_buf=b["act_bytes"], o_buf=b["out_bytes"], macs_per_cycle=mpc,
                    extra_cycles=ad_cycles, w_bpc=pts.bpc[self.wmem], a_bpc=pts.bpc[self.amem])
        if pts.n <= 8:  # a few points: memoised by value across calls and graphs (decode steps repeat GEMMs)
            key = (self.spec, b"".join(np.asarray(v, dtype=float).tobytes() for v in args.values()))
            p = _PLAN_MEMO.get(key)
            if p is None:
                if len(_PLAN_MEMO) > 16384:
                    _PLAN_MEMO.clear()
                p = _PLAN_MEMO[key] = plan_points(self.spec, **args)
        else:  # many points: shared by every GEMM of the same spec and rates on these points
            key = ("plan", self.spec, t.mode, self.w_bits, self.a_bits, self.ad_bits, t.kept, t.ad_macs, self.wmem,
                   self.amem)
            p = pts.memo.get(key)
            if p is None:
                p = pts.memo[key] = plan_points(self.spec, **args)
        return p, rate, ad_cycles

    def cost(self, pts: HwPoints) -> OpCost:
        t = self.terms
        p, rate, ad_cycles = self.plan(pts)
        mpe = p.padded_macs * t.kept / rate + ad_cycles
        sfu = np.zeros(pts.n)
        if self.dequant is not None:  # every loaded weight is dequantized (re-reads included)
            unit, ops, w_once = self.dequant
            dq = dequant_cycles(ops * (p.w_bytes / w_once if w_once else 1.0), pts.sfu["lanes"])
            if unit == "sfu":
                sfu = sfu + dq
            else:
                mpe = mpe + dq
        load = {self.wmem: p.w_bytes + t.extra}
        load[self.amem] = load.get(self.amem, 0.0) + p.x_bytes
        store = {self.amem: t.o_bytes} if t.o_bytes else {}
        op = self.op
        return OpCost(self.name, "linear", self.repeat, load, store, mpe, sfu, p.steps.astype(float),
                      self.macs, self.hidden, self.db_cost, self.overlaps, tile_at=p.tile_plan,
                      shape=(op.tokens, op.out_features, op.in_features), actions=self.actions(p))

    def actions(self, p) -> dict:
        """Energy action counts of one call with the tiling ``p`` (:func:`qesim.perf.terms.actions.linear_actions`);
        a pure function of the op and the tiling, so the last answer is kept for the same PlanArrays."""
        last = getattr(self, "_last_actions", None)
        if last is not None and last[0] is p:
            return last[1]
        key = None
        if len(p) == 1:  # one point: the tiling's numbers are the key (a new bandwidth, the same tiling)
            key = (int(p.tm[0]), int(p.tk[0]), int(p.tn[0]), int(p.order[0]), bool(p.fits[0]))
            if last is not None and last[2] == key:
                self._last_actions = (p, last[1], key)
                return last[1]
        a = self._actions(p)
        self._last_actions = (p, a, key)
        return a

    def _actions(self, p) -> dict:
        from qesim.perf.terms.actions import linear_actions

        op, t = self.op, self.terms
        ad = op.adapters
        ad_bytes = (adapter_params(ad, op.in_features, op.out_features, op.tokens)[0] * ad.adapter_bits / 8.0
                    if ad is not None else 0.0)
        return linear_actions(
            M=op.tokens, K=op.in_features, N=op.out_features, kept=t.kept, w_bytes_elem=t.w_bytes_elem,
            w_bits=op.weight_bits, a_bits=op.act_bits, out_bits=op.out_bits, x_offchip=self.spec.x_offchip,
            nm=p.nm, nk=p.nk, nn=p.nn, w_bytes=p.w_bytes, x_bytes=p.x_bytes, adapter_bits=self.ad_bits,
            adapter_macs=t.ad_macs, adapter_param_bytes=ad_bytes, adapters_resident=self.resident_adapters)


@lowering("linear")
def lower_linear(op: LinearOp, hw: HardwareConfig, stage: str) -> LoweredLinear:
    return LoweredLinear(op, hw, stage)
