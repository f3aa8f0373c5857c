"""Mixture-of-experts FFN (``MoEOp``, kind ``moe``).

One call of the op on M tokens is one op whose cost sums five parts, each GEMM lowered as every
other linear (:class:`qesim.perf.ops.linear.LoweredLinear`: the planner, quantization metadata,
MV/MM mode):

1. **router gate**: x[M, hidden] @ G[hidden, E] at ``gate_bits`` (fp16, never quantized), then
   on the SFU a softmax/sigmoid pass over the M x E logits and a top-k selection (one
   comparison pass per selected expert, i.e. ``top_k`` reduce passes);
2. **shared experts** (if any): one dense gated MLP of width ``shared_experts x
   expert_intermediate`` on all M tokens;
3. **routed experts**: T = touched experts (expected under uniform top-k routing, or under the
   measured ``expert_freqs``, or the graph's ``touched_experts``); each touched expert processes
   on average m_e = ceil(M x top_k / T) tokens: a fused gate+up GEMM [m_e, hidden] x
   [hidden, 2 x inter] (``gated``; plain experts: up only) and a down GEMM [m_e, inter] x
   [inter, hidden]. The costs of one expert are multiplied by T, so **only the touched experts'
   weights are loaded** (T x expert bytes) and the MACs are those of the padded per-expert tiles.
   For each expert GEMM the faster of two lowerings is kept per design point: one MM GEMM of m_e
   rows (padded to the array's m) or m_e matrix-vector passes over each weight tile while it is in
   the weight buffer (weights loaded once, MV compute and per-token activation traffic x m_e);
4. the activation (SiLU x up) over M x top_k x inter elements and, for W-A settings, the
   per-token quantization of the expert intermediate, on the SFU;
5. the weighted combination of the top_k expert outputs (and the shared output): M x top_k x
   hidden multiply-adds on the SFU.

Units: elements, bits, bytes, cycles. Approximation: every touched expert gets the average
token count m_e; the gate and expert parts are pipelined as one op (loads and computes add up).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from qesim.graph.ir import LinearOp, MoEOp
from qesim.hw.config import HardwareConfig
from qesim.perf.ops.base import Lowered, OpCost, arr, lowering, time_cost
from qesim.perf.ops.linear import LoweredLinear, weight_bytes
from qesim.perf.ops.routing import expected_touched
from qesim.perf.ops.sfu import vector_cycles
from qesim.perf.points import MEMORIES, HwPoints


def moe_touched(op: MoEOp) -> float:
    """Distinct routed experts one call of ``op`` touches (graph value > measured freqs > uniform)."""
    if op.touched_experts is not None:
        return float(op.touched_experts)
    return expected_touched(op.experts, op.tokens, op.top_k, op.expert_freqs)


def moe_tokens_per_expert(op: MoEOp, touched: Optional[float] = None) -> int:
    """Average tokens per touched expert, ceil(M x top_k / T) (at least 1)."""
    t = moe_touched(op) if touched is None else touched
    if t <= 0:
        return 1
    return max(1, math.ceil(op.tokens * op.top_k / t))


def _lin(op: MoEOp, name: str, M: int, K: int, N: int, *, w_bits: Optional[int] = None) -> LinearOp:
    quant = w_bits is None
    return LinearOp(
        name=name, in_features=K, out_features=N, tokens=M,
        weight_bits=op.weight_bits if quant else w_bits,
        group_size=op.group_size if quant else -1,
        weight_symmetric=op.weight_symmetric if quant else True,
        act_bits=op.act_bits if quant else 16,
        act_granularity=op.act_granularity if quant else "none",
        out_bits=op.out_bits, repeat=1,
    )


def moe_parts(op: MoEOp) -> list[tuple[LinearOp, float]]:
    """The GEMMs of one call as (LinearOp, multiplicity): gate, shared MLP, one routed expert x T."""
    h, inter = op.hidden, op.expert_intermediate
    parts: list[tuple[LinearOp, float]] = [(_lin(op, f"{op.name}.gate", op.tokens, h, op.experts,
                                                 w_bits=op.gate_bits), 1.0)]
    up_n = 2 if op.gated else 1
    if op.shared_width:
        parts.append((_lin(op, f"{op.name}.shared_gate_up", op.tokens, h, up_n * op.shared_width), 1.0))
        parts.append((_lin(op, f"{op.name}.shared_down", op.tokens, op.shared_width, h), 1.0))
    T = moe_touched(op)
    if T > 0:
        me = moe_tokens_per_expert(op, T)
        parts.append((_lin(op, f"{op.name}.expert_gate_up", me, h, up_n * inter), T))
        parts.append((_lin(op, f"{op.name}.expert_down", me, inter, h), T))
    return parts


def moe_weight_bytes(op: MoEOp, hw: HardwareConfig) -> dict[str, float]:
    """Stored weight bytes of one MoE layer: ``gate``, ``shared``, ``expert`` (ONE routed expert)
    and ``all_routed`` (all E). Loaded per call: gate + shared + touched x expert."""
    up_n = 2 if op.gated else 1
    h, inter = op.hidden, op.expert_intermediate
    q = (op.weight_bits, op.group_size, op.weight_symmetric, hw)
    expert = weight_bytes(h, up_n * inter, *q) + weight_bytes(inter, h, *q)
    shared = (weight_bytes(h, up_n * op.shared_width, *q) + weight_bytes(op.shared_width, h, *q)
              if op.shared_width else 0.0)
    gate = weight_bytes(h, op.experts, op.gate_bits, -1, True, hw)
    return {"gate": gate, "shared": shared, "expert": expert, "all_routed": expert * op.experts}


class _MvReuse:
    """A small per-expert batch of m_e tokens as m_e matrix-vector passes over each weight tile
    while it sits in the weight buffer: the weights are loaded once (as for one token), the MV
    compute and each token's input/output traffic are paid m_e times."""

    def __init__(self, lop: LinearOp, hw: HardwareConfig, stage: str):
        self.m_e = lop.tokens
        self.one = LoweredLinear(lop.model_copy(update={"tokens": 1}), hw, stage)
        self.extra_load, self.extra_store = {}, {}
        if hw.stage_policy(stage).activations_offchip:
            am = hw.placement.activations
            self.extra_load = {am: (self.m_e - 1) * lop.in_features * lop.act_bits / 8.0}
            self.extra_store = {am: (self.m_e - 1) * lop.out_features * lop.out_bits / 8.0}

    def cost(self, pts: HwPoints) -> OpCost:
        c = self.one.cost(pts)
        load, store = dict(c.load), dict(c.store)
        for m, b in self.extra_load.items():
            load[m] = load.get(m, 0.0) + b
        for m, b in self.extra_store.items():
            store[m] = store.get(m, 0.0) + b
        from qesim.perf.terms.actions import mv_reuse_actions

        acts = mv_reuse_actions(c.actions, self.m_e, self.one.op.in_features * self.one.op.act_bits / 8.0)
        return OpCost(c.name, c.kind, 1, load, store, c.mpe_cycles * self.m_e, c.sfu_cycles, c.steps,
                      c.macs * self.m_e, c.compute_hidden, c.double_buffered, c.sfu_overlaps, actions=acts)


class LoweredMoE(Lowered):
    def __init__(self, op: MoEOp, hw: HardwareConfig, stage: str):
        sp, pol = hw.stage_policy(stage), hw.policy
        self.op, self.name, self.kind, self.repeat = op, op.name, "moe", op.repeat
        self.out_shape = (op.tokens, op.hidden)
        self.parts = []  # (lowered linear, multiplicity, MV-reuse alternative or None)
        for lop, mult in moe_parts(op):
            alt = _MvReuse(lop, hw, stage) if (".expert_" in lop.name and lop.tokens > hw.mpe.mv_max_rows) else None
            self.parts.append((LoweredLinear(lop, hw, stage), mult, alt))
        self.T = moe_touched(op)
        self.m_e = moe_tokens_per_expert(op, self.T)
        self.hidden, self.db, self.overlaps = sp.compute_hidden, pol.double_buffering, pol.sfu_overlaps_mpe
        self.quant_on_sfu = op.act_bits < 16 and pol.act_quant_unit == "sfu"
        self.load_act, self.store_act = {}, {}
        M, k, inter, hid = op.tokens, op.top_k, op.expert_intermediate, op.hidden
        self.act_elems = M * k * inter + M * op.shared_width
        if sp.activations_offchip:
            am = hw.placement.activations
            # the activation's inputs/outputs (gate,up in, product out) and the combine's reads
            act_bytes = (self.act_elems * 2 * op.out_bits + self.act_elems * op.out_bits) / 8.0
            comb = M * (k + 1) * hid * op.out_bits / 8.0
            self.load_act = {am: act_bytes * 2 / 3 + comb}
            self.store_act = {am: act_bytes / 3 + M * hid * op.out_bits / 8.0}

    def sfu_cycles(self, pts: HwPoints):
        """Router scores + top-k, expert activation, intermediate quantization, combine."""
        op = self.op
        M, k, hid = op.tokens, op.top_k, op.hidden
        lanes = pts.sfu["lanes"]
        sfu = vector_cycles("softmax", M * op.experts, M, pts) + M * op.experts * k * pts.sfu["reduce_cycles"] / lanes
        sfu = sfu + vector_cycles("silu_mul" if op.gated else "silu", self.act_elems, 0, pts)
        if self.quant_on_sfu:
            sfu = sfu + vector_cycles("quantize", self.act_elems, M * k + (M if op.shared_width else 0), pts)
        sfu = sfu + vector_cycles("eltwise_add", M * (k + (1 if op.shared_width else 0)) * hid * 2, 0, pts)
        return sfu  # scale + accumulate

    def cost(self, pts: HwPoints) -> OpCost:
        n = pts.n
        load = {m: np.zeros(n) for m in MEMORIES}
        store = {m: np.zeros(n) for m in MEMORIES}
        mpe, steps, macs = np.zeros(n), np.zeros(n), 0.0
        notes = []
        from qesim.perf.terms.actions import merge

        actions: dict = {}
        for low, mult, alt in self.parts:
            c = low.cost(pts)
            if alt is not None:
                a = alt.cost(pts)
                use = time_cost(a, pts).cycles[0] < time_cost(c, pts).cycles[0]
                if use.any():
                    c = _select(use, a, c, n)
                    if use[0]:
                        notes.append(f"{low.name.rsplit('.', 1)[1]}: {low.op.tokens} MV passes, weights reused")
            for m in MEMORIES:
                load[m] = load[m] + arr(c.load.get(m, 0.0), n) * mult
                store[m] = store[m] + arr(c.store.get(m, 0.0), n) * mult
            mpe = mpe + arr(c.mpe_cycles, n) * mult
            steps = steps + arr(c.steps, n) * mult
            macs += c.macs * mult
            merge(actions, c.actions, mult)
        for m, b in self.load_act.items():
            load[m] = load[m] + b
        for m, b in self.store_act.items():
            store[m] = store[m] + b
        notes += [f"touched_experts={self.T:.3f}/{self.op.experts}", f"tokens_per_expert={self.m_e}"]
        load = {m: v for m, v in load.items() if np.any(v > 0)}
        store = {m: v for m, v in store.items() if np.any(v > 0)}
        return OpCost(self.name, "moe", self.repeat, load, store, mpe, self.sfu_cycles(pts),
                      np.maximum(1.0, np.ceil(steps)), float(round(macs)), self.hidden, self.db, self.overlaps,
                      notes=tuple(notes), actions=actions)


def _select(use: np.ndarray, a: OpCost, b: OpCost, n: int) -> OpCost:
    """Per point: ``a`` where ``use`` else ``b``."""
    pick = lambda x, y: np.where(use, arr(x, n), arr(y, n))  # noqa: E731
    mems = set(a.load) | set(b.load) | set(a.store) | set(b.store)
    load = {m: pick(a.load.get(m, 0.0), b.load.get(m, 0.0)) for m in mems}
    store = {m: pick(a.store.get(m, 0.0), b.store.get(m, 0.0)) for m in mems}
    from qesim.perf.terms.actions import select

    return OpCost(b.name, b.kind, 1, load, store, pick(a.mpe_cycles, b.mpe_cycles), pick(a.sfu_cycles, b.sfu_cycles),
                  pick(a.steps, b.steps), b.macs, b.compute_hidden, b.double_buffered, b.sfu_overlaps,
                  actions=select(use, a.actions, b.actions, n))


@lowering("moe")
def lower_moe(op: MoEOp, hw: HardwareConfig, stage: str) -> LoweredMoE:
    return LoweredMoE(op, hw, stage)
