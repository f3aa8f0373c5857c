"""Routing arithmetic shared by routed low-rank adapters (QE) and mixture-of-experts FFNs."""

from __future__ import annotations

from typing import Optional


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
