"""Quantizer settings (``W{w}A{a}``) and adapter structures per method -> graph fields.

Conventions follow the QE paper (Sec. 4.1) and the MBQ / llm-awq baselines it uses
(see ``shared/design/quantizer-facts.md`` §1):

- W-A settings (a_bits < 16, e.g. W4A6, W4A8, W8A8): weights per-output-channel symmetric,
  activations per-token dynamic symmetric.
- Weight-only settings (a_bits = 16 and w_bits < 16, e.g. W3A16, W4A16): group-wise asymmetric
  weights, group size 128.
- W16A16: the fp16 baseline, no quantizers.
"""

from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from qesim.errors import InputError
from qesim.graph.ir import LowRankAdapters

_SETTING_RE = re.compile(r"^W(\d{1,2})A(\d{1,2})$", re.IGNORECASE)


class QuantSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    w_bits: int = Field(ge=1, le=16)
    a_bits: int = Field(ge=1, le=16)
    group_size: int = -1
    weight_symmetric: bool = True
    act_granularity: str = "none"

    @property
    def name(self) -> str:
        return f"W{self.w_bits}A{self.a_bits}"

    @property
    def is_fp16(self) -> bool:
        return self.w_bits >= 16 and self.a_bits >= 16


def parse_setting(text: str, group_size: Optional[int] = None) -> QuantSetting:
    """``'W4A8'`` -> QuantSetting. ``group_size`` overrides the default for weight-only settings."""
    m = _SETTING_RE.match(text.strip())
    if not m:
        raise InputError(f"setting {text!r} is not of the form W<bits>A<bits> (e.g. W4A8, W3A16, W16A16)")
    w, a = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= 16 and 1 <= a <= 16):
        raise InputError(f"setting {text!r}: weight and activation bits must be in 1..16")
    if w >= 16 and a >= 16:
        return QuantSetting(w_bits=16, a_bits=16)
    if a >= 16:  # weight-only: group-wise asymmetric, g128
        return QuantSetting(w_bits=w, a_bits=16, group_size=group_size or 128, weight_symmetric=False)
    return QuantSetting(
        w_bits=w, a_bits=a, group_size=group_size or -1, weight_symmetric=True,
        act_granularity="per_token_dynamic",
    )


#: methods whose deployed form is a plain quantized linear (scales folded, nothing added)
PLAIN_METHODS = ("none", "rtn", "smoothquant", "awq", "gptq", "mbq")
#: methods with one global low-rank adapter
LOWRANK_METHODS = ("lqer", "aser")
METHODS = PLAIN_METHODS + LOWRANK_METHODS + ("qe",)


class AdapterDefaults(BaseModel):
    """QE paper defaults (Sec. 4.1): total rank 64 = 32 shared + 32 routed, Nr = 8, top-1;
    LQER/ASER get the same total rank 64."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    total_rank: int = 64
    shared_rank: int = 32
    routed_rank: int = 32
    routed_experts: int = 8
    active_per_token: int = 1
    adapter_bits: int = 16


def method_adapters(method: str, defaults: AdapterDefaults = AdapterDefaults()) -> Optional[LowRankAdapters]:
    """The adapter structure a method attaches to every quantized linear (None = no adapter)."""
    m = method.lower()
    if m in PLAIN_METHODS:
        return None
    if m in LOWRANK_METHODS:
        return LowRankAdapters(shared_rank=defaults.total_rank, router=False, adapter_bits=defaults.adapter_bits)
    if m == "qe":
        return LowRankAdapters(
            shared_rank=defaults.shared_rank,
            routed_experts=defaults.routed_experts,
            routed_rank=defaults.routed_rank,
            active_per_token=defaults.active_per_token,
            router=True,
            adapter_bits=defaults.adapter_bits,
        )
    raise InputError(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def linear_fields(setting: QuantSetting) -> dict:
    """LinearOp fields implied by a setting (output stays fp16, as the baselines do)."""
    return dict(
        weight_bits=setting.w_bits,
        group_size=setting.group_size,
        weight_symmetric=setting.weight_symmetric,
        act_bits=setting.a_bits,
        act_granularity=setting.act_granularity,
        out_bits=16,
    )
