"""Vector (SFU) ops: softmax, norms, activations, elementwise, (de)quantization, RoPE.

Cycles per element from the SFU table (two-pass ops reduce first), ``lanes`` elements per
cycle; bytes only where activations are off chip (:func:`qesim.perf.fusion.sfu_traffic`), plus a
constant vector operand (``const_elems``) from the weight memory (:func:`qesim.perf.fusion.sfu_const_bytes`).
The table is written once here and used by every op that does vector work (attention's
softmax, the MoE router and combine).
"""

from __future__ import annotations

import numpy as np

from qesim.graph.ir import SfuOp
from qesim.hw.config import HardwareConfig
from qesim.perf.fusion import sfu_const_bytes, sfu_traffic
from qesim.perf.ops.base import Lowered, OpCost, lowering
from qesim.perf.points import HwPoints

SFU_FUNCS = ("softmax", "layernorm", "rmsnorm", "silu", "silu_mul", "gelu", "relu", "eltwise_add", "eltwise_mul",
             "quantize", "dequantize", "rope")


def sfu_cycles_per_element(func: str, s) -> tuple:
    """(cycles per element, cycles per row) on one SFU lane for ``func``; ``s`` maps the SFU
    fields (``exp_cycles``, ...) to numbers or arrays over points (an ``SFU`` config works too)."""
    g = (lambda k: s[k]) if isinstance(s, dict) else (lambda k: getattr(s, k))
    e, r, q, red, rs = (g("elementwise_cycles"), g("reciprocal_cycles"), g("rsqrt_cycles"), g("reduce_cycles"),
                        g("exp_cycles"))
    if func == "softmax":  # max pass, exp + sum pass, scale pass; one reciprocal per row
        return red + rs + red + e, r
    if func == "layernorm":  # mean pass, variance pass, normalise (sub, mul) + affine (mul, add); rsqrt per row
        return red + red + 4 * e, q
    if func == "rmsnorm":  # sum of squares pass, normalise + weight multiply; one rsqrt per row
        return red + 2 * e, q
    if func == "silu":  # x * 1/(1+exp(-x))
        return rs + r + 2 * e, 0.0
    if func == "silu_mul":
        return rs + r + 3 * e, 0.0
    if func == "gelu":  # tanh form via exp
        return rs + r + 6 * e, 0.0
    if func in ("relu", "eltwise_add", "eltwise_mul", "dequantize"):
        return e, 0.0
    if func == "quantize":  # absmax pass; scale + round pass; one reciprocal per row
        return red + 2 * e, r
    if func == "rope":  # x*cos + rot(x)*sin
        return 3 * e, 0.0
    raise KeyError(func)


def vector_cycles(func: str, elements, rows, pts: HwPoints):
    """SFU cycles per point of ``func`` over ``elements`` elements in ``rows`` rows."""
    per_el, per_row = sfu_cycles_per_element(func, pts.sfu)
    return (elements * per_el + rows * per_row) / pts.sfu["lanes"]


class LoweredSfu(Lowered):
    def __init__(self, op: SfuOp, hw: HardwareConfig, stage: str):
        self.op, self.name, self.kind, self.repeat = op, op.name, "sfu", op.repeat
        self.load, self.store = sfu_traffic(op, hw, stage)
        for m, b in sfu_const_bytes(op, hw).items():  # a constant vector operand (omega), from weight memory
            self.load[m] = self.load.get(m, 0.0) + b
        self.in_mmu = op.func == "quantize" and hw.policy.act_quant_unit == "mmu"
        self.steps = max(1, min(op.rows, 64))
        self.db = hw.policy.double_buffering
        from qesim.perf.terms.actions import sfu_actions

        self.actions = sfu_actions(func=op.func, rows=op.rows, width=op.width, inputs=op.inputs, in_bits=op.in_bits,
                                   out_bits=op.out_bits)

    def signature(self):
        op = self.op
        return ("sfu", op.func, op.rows, op.width, self.in_mmu, tuple(sorted(self.load.items())),
                tuple(sorted(self.store.items())), self.steps, self.db,
                op.inputs, op.in_bits, op.out_bits)  # the last three: energy actions (buffer bytes)

    def sfu_cycles(self, pts: HwPoints):
        if self.in_mmu:  # quantization units on the memory path (FlightLLM MMU), not the SFU
            return np.zeros(pts.n)
        return vector_cycles(self.op.func, float(self.op.rows * self.op.width), float(self.op.rows), pts)

    def cost(self, pts: HwPoints) -> OpCost:
        return OpCost(self.name, "sfu", self.repeat, dict(self.load), dict(self.store), np.zeros(pts.n),
                      self.sfu_cycles(pts), float(self.steps), 0, False, self.db, True, func=self.op.func,
                      actions=dict(self.actions))


@lowering("sfu")
def lower_sfu(op: SfuOp, hw: HardwareConfig, stage: str) -> LoweredSfu:
    return LoweredSfu(op, hw, stage)
