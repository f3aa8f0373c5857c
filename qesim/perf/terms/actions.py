"""Action counts of one op call (what :mod:`.energy` prices), as pure functions over arrays of design
points. Each op lowering (``qesim/perf/ops/``) stores them in ``OpCost.actions`` (action -> count
per call, arrays of shape (n,) or scalars); off-chip bytes and SFU lane-cycles are not stored
there: :func:`qesim.perf.terms.energy.graph_energy` reads them from the OpCost's bytes and SFU
cycles.

Rules (bytes and MACs per call; M, K, N = tokens, in, out; the planner's tiling gives nm, nk, nn):

- **MACs**: useful MACs (padding lanes are clock-gated: assumption) keyed by operand precision
  ``mac:w{w}a{a}``: a linear's main GEMM ``M K N kept`` at (weight_bits, act_bits), its adapters
  and router at (adapter_bits, act_bits); attention ``2 b H scores d`` at (attention_bits, act_bits).
- **weight buffer**: every weight byte loaded off chip is written once; the array reads each
  weight once per m-tile (a weight is broadcast over the rows of its tile): ``nm K N wb``.
- **act buffer**: x is written once per load from off chip (or once, by the producer, when
  activations stay on chip) and read once per n-tile: ``nn M K ab``. Attention: K/V written once
  and read once per query head (``H / Hkv`` heads share a KV head), Q read once. SFU ops read their
  inputs once per pass (two passes for the two-phase softmax / layernorm / rmsnorm / quantize
  [FlightLLM 3.3]) and write their output once.
- **out buffer**: int32/fp32 partial sums are written once per k-tile and read back for every
  k-tile after the first, ``nk M N 4`` writes and ``(nk - 1) M N 4`` reads, plus one read of the
  finished output ``M N out_bits / 8``. Attention: scores written by QK^T, read twice and written
  once by the softmax, read by PV (fp16), and O written once.
- **adapter buffer**: the adapter and router parameters a call uses are read once; when they are
  streamed (not ``policy.adapters_resident``) they are also written once.

Register-level reuse inside the array is not charged (as Timeloop's buffer-level accounting).
"""

from __future__ import annotations

import numpy as np

from qesim.perf.terms.energy import mac_key

ACC_BYTES = 4  # int32 / fp32 partial sums (as the planner's output-buffer fit)
TWO_PASS = {"softmax", "layernorm", "rmsnorm", "quantize"}


def add(d: dict, key: str, v, mult=1.0) -> dict:
    """``d[key] += v * mult`` (arrays broadcast); returns ``d``."""
    d[key] = d.get(key, 0.0) + v * mult
    return d


def merge(into: dict, other: dict, mult=1.0) -> dict:
    """Add every action of ``other`` (times ``mult``) into ``into``."""
    for k, v in other.items():
        add(into, k, v, mult)
    return into


def select(use, a: dict, b: dict, n: int) -> dict:
    """Per point: ``a``'s counts where ``use`` else ``b``'s."""
    keys = set(a) | set(b)
    return {k: np.where(use, np.broadcast_to(np.asarray(a.get(k, 0.0), dtype=float), (n,)),
                        np.broadcast_to(np.asarray(b.get(k, 0.0), dtype=float), (n,))) for k in keys}


def linear_actions(*, M: int, K: int, N: int, kept: float, w_bytes_elem: float, w_bits: int, a_bits: int,
                   out_bits: int, x_offchip: bool, nm, nk, nn, w_bytes, x_bytes, adapter_bits=None,
                   adapter_macs: float = 0.0, adapter_param_bytes: float = 0.0,
                   adapters_resident: bool = False) -> dict:
    """Actions of one linear call. ``nm, nk, nn`` (tile counts), ``w_bytes``, ``x_bytes`` (off-chip
    weight and input bytes of the chosen tiling) are arrays over points (PlanArrays fields)."""
    d: dict = {}
    add(d, mac_key(w_bits, a_bits), float(M) * K * N * kept)
    wb, ab = w_bytes_elem, a_bits / 8.0
    add(d, "sram_write:weight", np.asarray(w_bytes, dtype=float))
    add(d, "sram_read:weight", np.asarray(nm, dtype=float) * K * N * wb)
    add(d, "sram_write:act", np.asarray(x_bytes, dtype=float) if x_offchip else float(M) * K * ab)
    add(d, "sram_read:act", np.asarray(nn, dtype=float) * M * K * ab)
    nk = np.asarray(nk, dtype=float)
    add(d, "sram_write:out", nk * M * N * ACC_BYTES)
    add(d, "sram_read:out", (nk - 1.0) * M * N * ACC_BYTES + M * N * out_bits / 8.0)
    if adapter_bits is not None:
        add(d, mac_key(adapter_bits, a_bits), adapter_macs)
        add(d, "sram_read:adapter", adapter_param_bytes)
        if not adapters_resident:
            add(d, "sram_write:adapter", adapter_param_bytes)
    return d


def mv_reuse_actions(one: dict, m_e: int, in_bytes: float) -> dict:
    """A per-expert batch of ``m_e`` tokens run as ``m_e`` matrix-vector passes over weights that stay
    in the weight buffer (``one``: the actions of one token): MACs and each token's input reads /
    output accumulation x m_e, weight traffic once."""
    d = dict(one)
    for k, v in one.items():
        if k.startswith("mac:") or k.endswith(":out"):
            d[k] = v * m_e
    add(d, "sram_write:act", in_bytes * (m_e - 1))
    add(d, "sram_read:act", in_bytes * (m_e - 1))
    return d


def attention_actions(*, batch: int, heads: int, kv_heads: int, head_dim: int, q_len: int, scores: float,
                      kv_len: int, kv_bits: int, act_bits: int, attention_bits: int) -> dict:
    d: dict = {}
    b, H, Hkv, dh, q = batch, heads, kv_heads, head_dim, q_len
    add(d, mac_key(attention_bits, act_bits), 2.0 * b * H * scores * dh)
    kv_bytes = 2.0 * b * Hkv * kv_len * dh * kv_bits / 8.0
    add(d, "sram_write:act", kv_bytes)
    add(d, "sram_read:act", kv_bytes * H / Hkv + b * q * H * dh * act_bits / 8.0)
    s_bytes = b * H * scores * 2.0
    add(d, "sram_write:out", 2 * s_bytes + b * q * H * dh * 2.0)
    add(d, "sram_read:out", 3 * s_bytes)
    return d


def sfu_actions(*, func: str, rows: int, width: int, inputs: int, in_bits: int, out_bits: int) -> dict:
    passes = 2 if func in TWO_PASS else 1
    return {"sram_read:act": float(passes * rows * width * inputs * in_bits / 8.0),
            "sram_write:act": float(rows * width * out_bits / 8.0)}


def embedding_actions(*, tokens: int, hidden: int) -> dict:
    return {"sram_write:act": float(tokens * hidden * 2.0)}
