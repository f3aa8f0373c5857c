"""Quantization methods. Each module provides ``quantize_block(ctx) -> {linear name: module}``:
given one block's FP linears and their FP calibration inputs it may fold scales into the
block's norms / previous linears (SmoothQuant, AWQ) and returns the replacement modules.

Registry: ``METHODS[name]`` -> quantize_block; ``NEEDS_CALLS`` = methods that need the inputs of
the block's sub-modules (AWQ's block-output loss).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from qesim.quant.model_utils import Arch, ScaleGroup
from qesim.quant.primitives import QuantSetting

#: method name -> module under qesim.quant.methods
METHOD_MODULES = {
    "rtn": "rtn",
    "smoothquant": "smoothquant",
    "awq": "awq",
    "gptq": "gptq",
    "lqer": "lqer",
    "aser": "aser",
    "qe": "qe_method",
}
ALL_METHODS = list(METHOD_MODULES)
NEEDS_CALLS = {"awq"}


@dataclass
class BlockContext:
    """Everything a method sees for one block."""

    arch: Arch
    index: int
    block: nn.Module
    linears: dict[str, nn.Linear]  # FP modules of this block (scales may be folded in place)
    X: dict[str, torch.Tensor]  # FP calibration inputs per linear, [T, in] float32
    batch_tokens: list[int]  # tokens per calibration mini-batch (X rows, in order)
    setting: QuantSetting
    opts: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, list] = field(default_factory=dict)  # sub-module path -> [(args, kwargs)]
    log: list[str] = field(default_factory=list)
    in_scales: dict[str, torch.Tensor] = field(default_factory=dict)  # unfoldable scales

    @property
    def groups(self) -> list[ScaleGroup]:
        return self.arch.groups(self.index)


def get_method(name: str) -> Callable[[BlockContext], dict[str, nn.Module]]:
    """``quantize_block`` of a built-in method or of an installed plug-in (``qesim.quant.plugins``)."""
    if name not in METHOD_MODULES:
        from qesim.quant.plugins import find

        q = find(name)
        if q is None:
            raise KeyError(name)
        return q.quantize_block
    mod = importlib.import_module(f"qesim.quant.methods.{METHOD_MODULES[name]}")
    return mod.quantize_block


def is_method(name: str) -> bool:
    """A built-in method (``ALL_METHODS``) or an installed plug-in quantizer."""
    from qesim.quant.plugins import find

    return name in METHOD_MODULES or find(name) is not None


def needs_calls(name: str) -> bool:
    """Whether the method wants the inputs of the block's sub-modules (AWQ; plug-ins that say so)."""
    if name in METHOD_MODULES:
        return name in NEEDS_CALLS
    from qesim.quant.plugins import get

    return get(name).needs_calls


def fold_scale(ctx: BlockContext, group: ScaleGroup, s: torch.Tensor) -> None:
    """Apply ``x -> x / s`` on the group's input and ``W -> W * s`` on its linears' columns.

    Foldable groups put 1/s into ``prev`` (norm weight/bias, or the previous linear's output
    rows); otherwise ``s`` is recorded in ``ctx.in_scales`` (runtime divide, minilm only).
    """
    s = s.detach().float()
    with torch.no_grad():
        for n in group.linears:
            lin = ctx.linears[n]
            lin.weight.mul_(s.view(1, -1))
        if group.prev is None:
            for n in group.linears:
                prev = ctx.in_scales.get(n)
                ctx.in_scales[n] = s if prev is None else prev * s
        elif group.prev_kind == "norm":
            group.prev.weight.div_(s)
            if getattr(group.prev, "bias", None) is not None:
                group.prev.bias.div_(s)
        else:  # previous linear: its output rows feed this group's input
            w = group.prev.weight
            w[-s.numel():].div_(s.view(-1, 1))
            if group.prev.bias is not None:
                group.prev.bias[-s.numel():].div_(s)


def make_qlinear(ctx: BlockContext, name: str, W: torch.Tensor | None = None, A=None, B=None, info=None):
    """QuantLinear for linear ``name`` with the setting's weight quantizer (unless ``W`` given,
    already quantized) and the setting's activation bits."""
    from qesim.quant.qlinear import QuantLinear

    lin = ctx.linears[name]
    Wq = ctx.setting.wq(lin.weight.detach().float()) if W is None else W
    return QuantLinear(Wq, lin.bias, ctx.setting.a_bits, A=A, B=B, in_scale=ctx.in_scales.get(name), info=info)


def scaled_inputs(ctx: BlockContext, name: str) -> torch.Tensor:
    """Calibration inputs of ``name`` as the (possibly rescaled) linear sees them."""
    X = ctx.X[name]
    s = ctx.in_scales.get(name)
    return X if s is None else X / s
