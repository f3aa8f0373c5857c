"""What the FlightLLM artifact's own VHK158 performance model implies for LLaMA-2-7B, from its facts.

The artifact (github.com/FlightLLM/flightllm_test_demo @4a96251, ``profile/``; summarised with
sources in ``shared/design/flightllm-facts.md`` §2) times an instruction stream per queue:

- MM (prefill): ``t_MM = 128 * K * 16 * 16 / 4096`` cycles per instruction (an M=128 x N=16 output
  tile, K counted in 16-blocks, 4,096 MAC/cycle), times ``sparse_ratio`` for a sparse linear;
- MV (decode): ``t_MV = 1 * K * 16 * 512 / 1024`` cycles per instruction (N=512 outputs per
  instruction, 1,024 MAC/cycle), times ``sparse_ratio`` (assumption: as MM; MV carries the same
  sparse flag in the ISA);
- LD/ST: ``bytes / (819.2 GB/s * 0.7)`` (same-channel efficiency), a sparse weight's bytes times
  its ``sparse_ratio`` (the profiler's ``bw_ratio = 1 / sparse_ratio`` for INT8);
- MISC: ``K * 16 / 16`` cycles per eltwise instruction (``elements / 16``), softmax and
  (RMS)layernorm x2 (two passes);
- every instruction time divided by ``correction_factor = 3.2`` (loads and stores included);
- clock 225 MHz. The event simulation's total is the max over the queues plus dependency stalls:
  :func:`artifact_model` returns the per-queue busy times and their max, a lower bound of it.

The LLaMA-2-7B IR (``profile/.compiler_output/ir_output``) is INT8 weights and activations, q_proj and
k_proj at ``sparse_ratio`` 0.7, everything else dense, lm_head included (INT8). Decode keeps
activations on chip (no activation traffic); prefill streams each linear's input in and output out
(INT8), lengths aligned to 128 (prefill) and 16 (decode). The KV cache is INT8.

Nothing here is fitted; it reads no FlightLLM result. ``qesim fidelity`` prints it beside
``qesim estimate`` on ``flightllm-vhk158`` (correction on compute only: loads at the physical 819.2
GB/s x 0.7) and ``flightllm-vhk158-artifact`` (the artifact's correction on every instruction).
"""

from __future__ import annotations

import math

F_HZ = 225e6  # [R] CLOCK_FREQ_MHZ 225
MM_MACS, MV_MACS = 4096, 1024  # [R] MM 128x16x2, MV 1x16x64
LD_BYTES_PER_S = 819.2e9 * 0.7  # [R] HBM_BW_GB_PER_SEC 819.2, same-channel efficiency 0.7
CORRECTION = 3.2  # [R] inst_profiler.py correction_factor
MISC_LANES = 16  # [R] MISC parallelism 16


def _pad(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def artifact_model(stage: str, seq_len: int = 128, context_len: int = 512, *, qk_density: float = 0.7,
                   spec=None) -> dict:
    """Per-queue busy time (ms) of one LLaMA-2-7B pass under the artifact's formulas (module
    docstring) and ``total_ms`` = their max. ``stage`` 'prefill' (``seq_len`` tokens, empty cache) or
    'decode' (one token over ``context_len`` cached positions)."""
    from qesim.graph.presets import get_spec

    s = spec or get_spec("llama2-7b")
    h, inter, L, heads, hd = s.hidden, s.intermediate, s.layers, s.heads, s.head_dim
    linears = [(h, h, qk_density), (h, h, qk_density), (h, h, 1.0), (h, h, 1.0),  # q, k, v, o
               (h, inter, 1.0), (h, inter, 1.0), (inter, h, 1.0)]  # gate, up, down (K, N, density)
    cyc = dict(ld=0.0, st=0.0, mm=0.0, mv=0.0, misc=0.0)
    if stage == "prefill":
        M = _pad(seq_len, 128)
        for K, N, d in linears:
            cyc["mm"] += L * M * _pad(K, 16) * _pad(N, 16) / MM_MACS * d
            cyc["ld"] += L * (K * N * d + M * K) / LD_BYTES_PER_S * F_HZ  # int8 weights + input
            cyc["st"] += L * M * N / LD_BYTES_PER_S * F_HZ  # int8 output
        # attention per head: QK^T (M x hd x M) and PV (M x M x hd) as block GEMMs, causal half
        cyc["mm"] += L * heads * 2 * M * hd * M / 2 / MM_MACS
        cyc["st"] += L * 2 * M * h / LD_BYTES_PER_S * F_HZ  # K and V written to the cache
        misc = L * (2 * 2 * M * h + 2 * M * h + 2 * M * inter + 2 * heads * M * M / 2)  # norms x2, adds, silu+mul, softmax x2
        cyc["misc"] += misc / MISC_LANES
        cyc["mv"] += _pad(h, 16) * _pad(s.vocab, 512) / MV_MACS  # lm_head for the last token
        cyc["ld"] += h * s.vocab / LD_BYTES_PER_S * F_HZ
    elif stage == "decode":
        ctx = _pad(context_len + 1, 16)
        for K, N, d in linears:
            cyc["mv"] += L * _pad(K, 16) * _pad(N, 512) / MV_MACS * d
            cyc["ld"] += L * K * N * d / LD_BYTES_PER_S * F_HZ
        cyc["mv"] += L * heads * (hd * _pad(ctx, 512) + ctx * _pad(hd, 512)) / MV_MACS  # QK^T, PV
        cyc["ld"] += L * 2 * ctx * h / LD_BYTES_PER_S * F_HZ  # int8 K and V
        cyc["st"] += L * 2 * h / LD_BYTES_PER_S * F_HZ
        cyc["mv"] += _pad(h, 16) * _pad(s.vocab, 512) / MV_MACS  # lm_head (int8, dense)
        cyc["ld"] += h * s.vocab / LD_BYTES_PER_S * F_HZ
        cyc["misc"] += L * (2 * 2 * h + 2 * h + 2 * inter + 2 * heads * ctx) / MISC_LANES
    else:
        raise ValueError(f"stage must be 'prefill' or 'decode' (got {stage!r})")
    out = {f"{k}_ms": v / CORRECTION / F_HZ * 1e3 for k, v in cyc.items()}
    out["total_ms"] = max(out.values())
    return out


def flightllm_rows(seq_len: int = 128, context_len: int = 512) -> list[dict]:
    """The artifact model beside ``qesim estimate`` (W8A8, ``--density q_proj=0.7,k_proj=0.7``) on
    both VHK158 configs, prefill and decode; ``lm_head`` as qesim's graph has it (fp16) and as the
    artifact's IR has it (INT8, ``linear_overrides``)."""
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw
    from qesim.perf.estimate import estimate_graph

    rows = []
    for stage in ("prefill", "decode"):
        art = artifact_model(stage, seq_len, context_len)
        for hwn in ("flightllm-vhk158", "flightllm-vhk158-artifact"):
            hw = load_hw(hwn)
            ms = {}
            for lm, over in (("fp16", None), ("int8", {"lm_head": {"weight_bits": 8, "act_bits": 8}})):
                g = build_graph("llama2-7b", stage=stage, seq_len=seq_len, context_len=0 if stage == "prefill"
                                else context_len, setting="W8A8", density="q_proj=0.7,k_proj=0.7", linear_overrides=over)
                e = estimate_graph(g, hw)
                ms[lm] = (e.latency_s * 1e3, e.bound)
            rows.append(dict(stage=stage, hw=hwn, qesim_ms=ms["fp16"][0], bound=ms["fp16"][1],
                             qesim_int8_head_ms=ms["int8"][0], artifact_ms=art["total_ms"],
                             artifact_queue=max((k for k in art if k != "total_ms"), key=art.get)[:-3],
                             artifact_ld_ms=art["ld_ms"]))
    return rows


def flightllm_markdown(rows: list, seq_len: int = 128, context_len: int = 512) -> str:
    L = ["## FlightLLM VHK158: qesim against the artifact's own model", "",
         f"`qesim estimate --model llama2-7b --hw HW --setting W8A8 --density q_proj=0.7,k_proj=0.7` (prefill "
         f"s={seq_len}; decode one token at context {context_len}) beside what the FlightLLM artifact's VHK158 "
         "performance model implies from its facts (`qesim/fidelity/flightllm.py`: its instruction-time formulas, "
         "max over queues, a lower bound of its event simulation; no FlightLLM result is read). `flightllm-vhk158` "
         "applies the profiler's 3.2 to compute only (loads at the physical 819.2 GB/s x 0.7); "
         "`flightllm-vhk158-artifact` divides every instruction, loads and stores too, as the artifact does "
         "(an effective 1,835 GB/s, above the HBM's 819.2 GB/s peak). Policy: neither config is changed from "
         "FlightLLM results; the artifact-faithful variant is a separate preset. qesim's graph keeps lm_head in "
         "fp16; the artifact's IR has it INT8 (the `int8 lm_head` column).", "",
         "| stage | hw | qesim ms | bound | qesim ms, int8 lm_head | artifact model ms (queue) | qesim / artifact |",
         "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        L.append(f"| {r['stage']} | {r['hw']} | {r['qesim_ms']:.2f} | {r['bound']} | {r['qesim_int8_head_ms']:.2f} | "
                 f"{r['artifact_ms']:.2f} ({r['artifact_queue']}) | {r['qesim_int8_head_ms'] / r['artifact_ms']:.3f} |")
    return "\n".join(L)
