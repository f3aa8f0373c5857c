"""Whole-model inference of one request: prefill, then decode steps over a growing KV cache.

A request of shape ``[prefill, decode] = [s, n]`` (per sequence, ``batch`` sequences in lock
step) is:

1. one **prefill** pass over ``s`` tokens with an empty cache (``build_graph(stage='prefill',
   seq_len=s, context_len=0)``); it produces the first output token, so
   **TTFT** (time to first token) = prefill latency;
2. ``n`` **decode** steps; step ``j`` (``j = 0 .. n-1``) generates one token per sequence over a
   cache of ``s + j`` tokens (``build_graph(stage='decode', context_len=s + j)``, attention reads
   ``s + j + 1`` K/V rows).

End-to-end latency = TTFT + sum of the decode step latencies; **decode tokens/s** =
``batch * n / decode seconds``; end-to-end tokens/s = ``batch * n / end-to-end seconds``.

Decode cost grows with the context only through attention (K/V reads, QK^T/PV MACs, softmax).
Timing all ``n`` steps would cost ``n`` engine runs, so the step latency ``f(j)`` is **sampled**
at ``j = 0, k, 2k, ...`` and ``n-1`` (``k = sample_every``) and summed over every integer ``j`` by
piecewise-linear interpolation between the samples (``numpy.interp``). ``f`` is linear in the
context between pipeline regime changes (each op is ``max`` of two linear functions plus a
linear fill term), so the interpolation is exact on linear stretches and over-estimates only
across a kink of the convex ``max`` (tests bound the error against the exact sum).
``sample_every=1`` times every step exactly.

With ``engine='cycle'`` the ops that are identical between passes (everything but attention
between decode steps) are simulated once per request and reused (``simulate_graph(memo=...)``;
exact, the model is deterministic and ops start from an idle machine).

Units: seconds (``*_s``), cycles, tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from qesim.errors import InputError
from qesim.hw.config import HardwareConfig

DEFAULT_SAMPLE_EVERY = 128


def _engine(engine: str):
    from functools import partial

    from qesim.perf.engines import get_engine

    fn = get_engine(engine)
    if engine == "cycle":
        # one memo per request: decode steps differ only in attention, the other ops are replayed once
        return partial(fn, memo={})
    return fn


@dataclass
class RequestEstimate:
    """Latency and throughput of one request (seconds, tokens/s)."""

    model: str
    hw: str
    setting: str
    method: str
    engine: str
    prefill: int  # prompt tokens per sequence
    decode: int  # decode steps (generated tokens after the first) per sequence
    batch: int
    ttft_s: float  # prefill pass latency
    decode_s: float  # all decode steps
    prefill_bound: str
    decode_bound: str  # bound of the middle sampled decode step
    samples: list = field(default_factory=list)  # [(context_len, step seconds)]
    density: float = 1.0

    @property
    def e2e_s(self) -> float:
        return self.ttft_s + self.decode_s

    @property
    def decode_tokens_per_s(self) -> float:
        return self.batch * self.decode / self.decode_s if self.decode_s > 0 else float("inf")

    @property
    def e2e_tokens_per_s(self) -> float:
        return self.batch * self.decode / self.e2e_s if self.e2e_s > 0 else float("inf")

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.batch * self.prefill / self.ttft_s if self.ttft_s > 0 else float("inf")

    def to_dict(self) -> dict:
        return {
            "model": self.model, "hw": self.hw, "setting": self.setting, "method": self.method,
            "engine": self.engine, "prefill": self.prefill, "decode": self.decode, "batch": self.batch,
            "density": self.density, "ttft_s": self.ttft_s, "decode_s": self.decode_s, "e2e_s": self.e2e_s,
            "decode_tokens_per_s": self.decode_tokens_per_s, "e2e_tokens_per_s": self.e2e_tokens_per_s,
            "prefill_tokens_per_s": self.prefill_tokens_per_s, "prefill_bound": self.prefill_bound,
            "decode_bound": self.decode_bound,
            "decode_step_s": [{"context_len": c, "seconds": t} for c, t in self.samples],
        }


def sample_points(n: int, sample_every: int) -> list[int]:
    """Decode step indices that are timed: 0, k, 2k, ... and n-1."""
    if n <= 0:
        return []
    if sample_every < 1:
        raise InputError(f"sample_every must be >= 1 (got {sample_every})")
    pts = list(range(0, n, sample_every))
    if pts[-1] != n - 1:
        pts.append(n - 1)
    return pts


def integrate_steps(points: list[int], values: list[float], n: int) -> float:
    """Sum of f(j) over j = 0..n-1 from samples f(points) by linear interpolation."""
    if n <= 0:
        return 0.0
    return float(np.interp(np.arange(n), points, values).sum())


def request_latency(model: str, hw: HardwareConfig, *, setting: str = "W16A16", method: str = "none",
                    prefill: int = 128, decode: int = 512, batch: int = 1, density: float = 1.0,
                    kv_bits: Optional[int] = None, engine: str = "analytical",
                    sample_every: int = DEFAULT_SAMPLE_EVERY) -> RequestEstimate:
    """Time one request ``[prefill, decode]`` of ``model`` on ``hw`` (see the module docstring).

    Args:
        model: model preset name.
        hw: hardware config.
        setting, method, density, kv_bits: as for :func:`qesim.graph.builders.build_graph`.
        prefill: prompt tokens per sequence (>= 1).
        decode: decode steps per sequence (>= 0).
        batch: sequences processed in lock step.
        engine: ``'analytical'`` or ``'cycle'``.
        sample_every: decode steps between timed samples (1 = time every step).
    """
    from qesim.graph.builders import build_graph

    if not isinstance(prefill, int) or prefill < 1:
        raise InputError(f"prefill must be an integer >= 1 (got {prefill!r})")
    if not isinstance(decode, int) or decode < 0:
        raise InputError(f"decode must be an integer >= 0 (got {decode!r})")
    run = _engine(engine)
    common = dict(setting=setting, method=method, batch=batch, density=density, kv_bits=kv_bits)
    g0 = build_graph(model, stage="prefill", seq_len=prefill, context_len=0, **common)
    pre = run(g0, hw)
    pts = sample_points(decode, sample_every)
    samples, bounds = [], []
    for j in pts:
        est = run(build_graph(model, stage="decode", context_len=prefill + j, **common), hw)
        samples.append((prefill + j, est.latency_s))
        bounds.append(est.bound)
    decode_s = integrate_steps(pts, [t for _, t in samples], decode)
    return RequestEstimate(
        model=model, hw=hw.name, setting=g0.setting, method=g0.method, engine=engine, prefill=prefill, decode=decode, batch=batch, ttft_s=pre.latency_s,
        decode_s=decode_s, prefill_bound=pre.bound, decode_bound=bounds[len(bounds) // 2] if bounds else "none",
        samples=samples, density=density,
    )


def parse_request(text: str) -> tuple[int, int]:
    """``'128,512'`` (or ``'128x512'``, ``'[128, 512]'``) -> (prefill, decode)."""
    t = text.strip().strip("[]()").replace("x", ",").replace(":", ",")
    parts = [p.strip() for p in t.split(",") if p.strip()]
    try:
        s, n = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"request {text!r} must be PREFILL,DECODE (e.g. 128,512)") from None
    if s < 1 or n < 0:
        raise InputError(f"request {text!r}: prefill must be >= 1 and decode >= 0")
    return s, n
