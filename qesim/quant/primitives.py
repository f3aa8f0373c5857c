"""Fake-quantization primitives (quantizer-facts.md §1; the MBQ / llm-awq convention).

All functions return a tensor of the same shape and dtype as the input ("fake quant":
quantize then dequantize). Weight tensors are ``[out, in]`` (``nn.Linear`` layout).

- Symmetric (``symmetric=True``): ``scale = max|W|.clamp(1e-5) / (2^(b-1) - 1)``;
  ``Wq = clamp(round(W / scale), -2^(b-1), 2^(b-1) - 1) * scale`` (the ``-2^(b-1)`` code is
  never produced because ``|round(W/scale)| <= 2^(b-1)-1``).
- Asymmetric (``symmetric=False``): ``max_int = 2^b - 1``; ``scale = (max - min).clamp(1e-5) /
  max_int``; ``zero = clamp(-round(min / scale), 0, max_int)``;
  ``Wq = (clamp(round(W / scale) + zero, 0, max_int) - zero) * scale``.
- ``group_size=-1``: one group per output row (per-output-channel); otherwise groups of
  ``group_size`` consecutive input columns. The reference code asserts ``in % group_size == 0``;
  qesim instead lets the LAST group of a row be smaller (ragged) when it does not divide, because
  SmolLM2-135M has ``in = 576 = 4.5 x 128`` (its last group then holds 64 columns).
- Activations: dynamic per-token symmetric absmax over the last dim (scale computed on every
  call); identity when ``bits >= 16``.

Settings (``parse_setting``): ``W{w}A{a}``. With ``a >= 16`` (weight-only) the MBQ/QE line of
work uses asymmetric group-128 weights; with ``a < 16`` per-output-channel symmetric weights and
per-token symmetric activations (``WALinear``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

__all__ = [
    "quantize_weight",
    "quantize_act",
    "QuantSetting",
    "parse_setting",
]


def quantize_weight(W: torch.Tensor, bits: int, group_size: int = -1, symmetric: bool = True) -> torch.Tensor:
    """Fake-quantize a weight ``W`` ([out, in]) to ``bits`` bits; same shape/dtype out.

    ``bits >= 16`` returns ``W`` unchanged.
    """
    if bits >= 16:
        return W
    if bits < 2 and symmetric:
        raise ValueError("symmetric quantization needs at least 2 bits")
    shape = W.shape
    dtype = W.dtype
    w = W.reshape(-1, shape[-1]) if W.dim() != 2 else W
    w = w.float()
    if group_size is not None and 0 < group_size < w.shape[-1]:
        n_in = w.shape[-1]
        full = (n_in // group_size) * group_size
        if full != n_in:  # ragged last group: quantize the two parts separately
            head = quantize_weight(w[:, :full], bits, group_size, symmetric)
            tail = quantize_weight(w[:, full:], bits, -1, symmetric)
            return torch.cat([head, tail], dim=1).reshape(shape).to(dtype)
        w = w.reshape(-1, group_size)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-5) / qmax
        q = torch.clamp(torch.round(w / scale), -(qmax + 1), qmax) * scale
    else:
        max_int = 2**bits - 1
        wmax = w.amax(dim=1, keepdim=True)
        wmin = w.amin(dim=1, keepdim=True)
        scale = (wmax - wmin).clamp(min=1e-5) / max_int
        zero = torch.clamp(-torch.round(wmin / scale), 0, max_int)
        q = (torch.clamp(torch.round(w / scale) + zero, 0, max_int) - zero) * scale
    return q.reshape(shape).to(dtype)


def quantize_act(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Dynamic per-token symmetric absmax fake quantization over the last dim.

    Identity when ``bits >= 16`` (or ``bits`` is None).
    """
    if bits is None or bits >= 16:
        return x
    qmax = 2 ** (bits - 1) - 1
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5) / qmax
    q = torch.clamp(torch.round(xf / scale), -(qmax + 1), qmax) * scale
    return q.to(x.dtype)


@dataclass(frozen=True)
class QuantSetting:
    """A ``W{w}A{a}`` setting with the weight-quantizer convention it implies."""

    name: str
    w_bits: int
    a_bits: int
    group_size: int  # -1 = per output channel
    symmetric: bool

    @property
    def weight_only(self) -> bool:
        return self.a_bits >= 16

    def wq(self, W: torch.Tensor) -> torch.Tensor:
        """The weight fake-quantizer of this setting."""
        return quantize_weight(W, self.w_bits, self.group_size, self.symmetric)

    def aq(self, x: torch.Tensor) -> torch.Tensor:
        """The activation fake-quantizer of this setting."""
        return quantize_act(x, self.a_bits)


_SETTING_RE = re.compile(r"^[Ww](\d+)[Aa](\d+)$")


def parse_setting(name: str, group_size: int | None = None) -> QuantSetting:
    """Parse ``W4A8`` etc. Weight-only (A >= 16) -> asymmetric group-128 weights;
    weight-activation -> per-output-channel symmetric weights (MBQ ``WALinear``).
    ``group_size`` overrides the default group size (asymmetric groups stay asymmetric)."""
    m = _SETTING_RE.match(name.strip())
    if not m:
        raise ValueError(f"bad setting {name!r}: expected W<bits>A<bits>, e.g. W4A8")
    w, a = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= 16 and 1 <= a <= 16):
        raise ValueError(f"bad setting {name!r}: bits must be within 1..16")
    if a >= 16:
        g = 128 if group_size is None else group_size
        sym = False
    else:
        g = -1 if group_size is None else group_size
        sym = g <= 0
    return QuantSetting(name=f"W{w}A{a}", w_bits=w, a_bits=a, group_size=g, symmetric=sym)
