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
    """``'W4A8'`` -> QuantSetting. ``group_size`` (weights per group along in_features; -1 = per output
    channel) overrides the default of the setting: g128 for weight-only, per channel for W-A settings."""
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                   or (group_size != -1 and group_size < 1)):
        raise InputError(f"group size must be an integer >= 1 or -1 (per output channel) (got {group_size!r})")
    m = _SETTING_RE.match(text.strip())
    if not m:
        raise InputError(f"setting {text!r} is not of the form W<bits>A<bits> (e.g. W4A8, W3A16, W16A16)")
    w, a = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= 16 and 1 <= a <= 16):
        raise InputError(f"setting {text!r}: weight and activation bits must be in 1..16")
    if w >= 16 and a >= 16:
        return QuantSetting(w_bits=16, a_bits=16)
    if a >= 16:  # weight-only: group-wise asymmetric, g128
        return QuantSetting(w_bits=w, a_bits=16, group_size=128 if group_size is None else group_size,
                            weight_symmetric=False)
    return QuantSetting(
        w_bits=w, a_bits=a, group_size=-1 if group_size is None else group_size, weight_symmetric=True,
        act_granularity="per_token_dynamic",
    )


def parse_density(value) -> "float | dict[str, float]":
    """Weight density (kept fraction, N:M sparsity) from the command line or a sweep file.

    A plain number (``0.7`` or ``"0.7"``) applies to every decoder linear; ``"q_proj=0.7,k_proj=0.7"``
    (or a mapping) sets the named linears only (names as in the graph, with or without ``layer.``;
    ``lm_head`` allowed) and leaves the others dense. Every density must be in (0, 1]."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        items = None
        d = float(value)
    else:
        text = str(value).strip()
        if "=" not in text:
            try:
                d = float(text)
            except ValueError:
                raise InputError(f"density {value!r} is neither a number nor NAME=D[,NAME=D...] "
                                 "(e.g. 0.5 or q_proj=0.7,k_proj=0.7)") from None
            items = None
        else:
            items = []
            for part in text.split(","):
                name, eq, num = part.partition("=")
                if not eq or not name.strip():
                    raise InputError(f"density {value!r}: {part!r} is not NAME=D (e.g. q_proj=0.7)")
                items.append((name.strip(), num.strip()))
    if items is None:
        if not 0 < d <= 1:
            raise InputError(f"density must be in (0, 1] (got {value!r})")
        return d
    out: dict[str, float] = {}
    for name, num in items:
        try:
            d = float(num)
        except (TypeError, ValueError):
            raise InputError(f"density of {name!r} is not a number (got {num!r})") from None
        if not 0 < d <= 1:
            raise InputError(f"density of {name!r} must be in (0, 1] (got {num!r})")
        if name in out:
            raise InputError(f"density names {name!r} twice")
        out[str(name)] = d
    if not out:
        raise InputError("density: no NAME=D given")
    return out


def density_label(density) -> "float | str":
    """A graph-meta value for a density: the number, or ``'q_proj=0.7,k_proj=0.7'``."""
    if isinstance(density, dict):
        return ",".join(f"{k}={v:g}" for k, v in density.items())
    return float(density)


#: methods whose deployed form is a plain quantized linear (scales folded, nothing added)
PLAIN_METHODS = ("none", "rtn", "smoothquant", "awq", "gptq", "mbq")
#: methods with one global low-rank adapter
LOWRANK_METHODS = ("lqer", "aser")
METHODS = PLAIN_METHODS + LOWRANK_METHODS + ("qe",)
#: methods whose deployed linears divide their input by a per-linear channel vector before the
#: activation quantizer (QE's omega, ASER's activation smoothing; ``qesim.quant.qe`` /
#: ``qesim.quant.methods.aser``). It differs between the linears sharing an input, so it is an op
#: per linear in the graph (``build_graph(input_scaling=...)``), not a fold into the norm.
INPUT_SCALING_METHODS = ("qe", "aser")


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
    from qesim.quant.plugins import find, names  # plug-in quantizers (entry points; no torch)

    q = find(m) if m.strip() else None
    if q is not None:
        return q.graph_adapters(defaults)
    plug = f"; installed plug-ins: {', '.join(names())}" if names() else ""
    raise InputError(f"unknown method {method!r}; known: {', '.join(METHODS)}{plug}")


def is_method(method: str) -> bool:
    """A built-in method name or an installed plug-in quantizer (``qesim.quant.plugins``)."""
    try:
        method_adapters(str(method))
    except InputError:
        return False
    return True


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
