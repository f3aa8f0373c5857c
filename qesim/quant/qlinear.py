"""``QuantLinear``: the fake-quantized replacement of an ``nn.Linear`` used by every baseline.

forward(x):  x' = x / in_scale (only when a scale could not be folded, see model_utils)
             xq = quantize_act(x', a_bits)                     (dynamic per-token symmetric)
             y  = xq @ Wq^T + b  (+ (xq @ A) @ B  for LQER/ASER low-rank adapters)

The low-rank adapter consumes the SAME quantized activation (LQER reference) and is kept in
float32 (the graph export records it as 16-bit adapters).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from qesim.quant.primitives import quantize_act


class QuantLinear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], a_bits: int,
                 A: Optional[torch.Tensor] = None, B: Optional[torch.Tensor] = None,
                 in_scale: Optional[torch.Tensor] = None, info: Optional[dict] = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.a_bits = int(a_bits)
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer("A", None if A is None else A.detach().float().contiguous())
        self.register_buffer("B", None if B is None else B.detach().float().contiguous())
        self.register_buffer("in_scale", None if in_scale is None else in_scale.detach().float().clone())
        self.info = dict(info or {})

    @property
    def rank(self) -> int:
        return 0 if self.A is None else int(self.A.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_scale is not None:
            x = x / self.in_scale
        xq = quantize_act(x, self.a_bits)
        y = F.linear(xq, self.weight, self.bias)
        if self.A is not None and self.A.shape[1] > 0:
            y = y + (xq @ self.A) @ self.B
        return y

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, a_bits={self.a_bits}, rank={self.rank}, info={self.info}"
