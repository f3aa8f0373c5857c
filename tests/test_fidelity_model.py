"""The fidelity terms inside the one cost model (qesim.perf.terms.apply, the linear / attention
lowerings) and the cycle model's replay: neutral terms change nothing; each term hand-computed on a
toy config."""

import numpy as np
import pytest

from qesim.graph.builders import build_graph, single_linear_graph
from qesim.hw.loader import load_hw
from qesim.perf.estimate import clear_caches, estimate_graph
from qesim.perf.points import HwPoints
from qesim.perf.terms.apply import apply_terms

TOY = load_hw("nvidia-a100-80gb").with_updates({"terms.wave_tile": None, "terms.dequant.unit": "none"})
F = TOY.frequency_hz


def _one(graph, hw):
    clear_caches()
    return estimate_graph(graph, hw).to_dict()["ops"][0]


@pytest.mark.parametrize("hw", ["qe-paper-npu", "flightllm-u280", "flightllm-vhk158", "nvidia-a100"])
@pytest.mark.parametrize("stage,setting", [("prefill", "W4A8"), ("decode", "W16A16"), ("decode", "W4A16")])
def test_neutral_terms_reproduce_todays_numbers_exactly(hw, stage, setting):
    h = load_hw(hw)
    g = build_graph("llama2-7b", stage=stage, setting=setting, seq_len=128, context_len=256)
    base = estimate_graph(g, h)
    explicit = h.with_updates({f"terms.{c}.{k}": v for c in ("linear", "norm", "softmax")
                               for k, v in (("fixed_us", 0.0), ("floor_us", 0.0), ("compute_efficiency", 1.0),
                                            ("k_half", 0.0), ("issue_cycles_per_step", 0.0))})
    clear_caches()
    again = estimate_graph(g, explicit)
    assert again.cycles == base.cycles  # exact, not approximately
    assert again.columns["cycles"] == base.columns["cycles"]
    from qesim.perf.estimate import compiled_graph

    cg = compiled_graph(g, h)
    pts = HwPoints.of(h)
    costs = cg.costs(pts)
    assert all(a is b for a, b in zip(apply_terms(costs, pts, h), costs))  # neutral: the same objects


def test_compute_efficiency_wave_and_rolloff_hand_computed():
    g = single_linear_graph(384, 1024, tokens=4096, stage="prefill")
    base = _one(g, TOY)
    hw = TOY.with_updates({"terms.linear.compute_efficiency": 0.9, "terms.linear.k_half": 128.0,
                           "terms.wave_tile": {"m": 128, "n": 128}})
    got = _one(g, hw)
    # 4096 x 1024 output in 128 x 128 tiles = 32 * 8 = 256 tiles on 108 SMs: 3 waves -> 256 / 324
    eff = 0.9 * 384 / (384 + 128) * 256 / 324
    assert got["mpe_cycles"] == pytest.approx(base["mpe_cycles"] / eff, rel=1e-12)


def test_fixed_floor_and_memory_efficiency_hand_computed():
    g = single_linear_graph(4096, 4096, tokens=1, stage="decode")  # GEMV: memory-bound
    base = _one(g, TOY)
    hw = TOY.with_updates({"terms.linear.memory_efficiency": 0.5})
    got = _one(g, hw)
    # the class's 0.5 replaces the channel's 0.85: memory time x 0.85 / 0.5
    assert got["cycles"] == pytest.approx(base["cycles"] * 0.85 / 0.5, rel=1e-3)
    hw = TOY.with_updates({"terms.linear.fixed_us": 3.0, "terms.linear.issue_cycles_per_step": 10.0})
    got = _one(g, hw)
    steps = estimate_graph(g, TOY).columns["steps"][0]
    assert got["cycles"] == pytest.approx(base["cycles"] + 3e-6 * F + 10.0 * steps, rel=1e-12)
    hw = TOY.with_updates({"terms.linear.floor_us": 1000.0})
    assert _one(g, hw)["cycles"] == pytest.approx(1000e-6 * F, rel=1e-12)


def test_correction_factor_divides_every_instruction_time():
    g = single_linear_graph(4096, 4096, tokens=1, stage="decode")
    base = _one(g, TOY)
    got = _one(g, TOY.with_updates({"terms.correction_factor": 3.2}))
    assert got["cycles"] == pytest.approx(base["cycles"] / 3.2, rel=1e-12)


def test_dequant_hand_computed():
    hw = load_hw("nvidia-a100-80gb").with_updates({"terms.wave_tile": None})
    g = single_linear_graph(4096, 4096, tokens=1, setting="W4A16", stage="decode")
    op = _one(g, hw)
    # int4 g128: 1.5 ops per weight + 2 per group on 6,912 lanes, added to the linear's SFU cycles
    want = (4096 * 4096 * 1.5 + 4096 * 4096 / 128 * 2) / 6912
    assert op["sfu_cycles"] == pytest.approx(want, rel=1e-9)
    assert _one(g, hw.with_updates({"terms.dequant.unit": "none"}))["sfu_cycles"] == 0.0
    # W8A8 runs on the int8 tensor cores: nothing to dequantize
    g8 = single_linear_graph(4096, 4096, tokens=1, setting="W8A8", stage="decode")
    assert _one(g8, hw)["sfu_cycles"] == 0.0


def test_dequant_not_pipelined_adds_memory_and_compute():
    """terms.dequant.pipelined false: a dequantizing linear's memory and compute cycles add; a
    pipelined one overlaps them (max + min / steps); linears that do not dequantize are unchanged."""
    base = load_hw("nvidia-a100-80gb").with_updates({"terms.wave_tile": None})
    pip, ser = base.with_updates({"terms.dequant.pipelined": True}), base.with_updates({"terms.dequant.pipelined": False})
    g = single_linear_graph(4096, 4096, tokens=1, setting="W4A16", stage="decode")

    def col(hw):
        clear_caches()
        c = estimate_graph(g, hw).columns
        return {k: c[k][0] for k in ("cycles", "hbm_cycles", "mpe_cycles", "sfu_cycles", "steps", "bytes")}

    a, b = col(pip), col(ser)
    mem, comp, steps = b["hbm_cycles"], b["mpe_cycles"] + b["sfu_cycles"], b["steps"]
    assert a["hbm_cycles"] == mem and a["sfu_cycles"] == b["sfu_cycles"] > 0
    assert b["cycles"] == pytest.approx(mem + comp, rel=1e-12)  # loads, then dequant + MACs
    assert a["cycles"] == pytest.approx(max(mem, comp) + min(mem, comp) / steps, rel=1e-12)
    assert mem == pytest.approx(b["bytes"] / (2039e9 * 0.85 / 1.41e9), rel=1e-9)  # HBM at 0.85 of 2,039 GB/s
    assert b["bytes"] > 4096 * 4096 / 2  # int4 weights plus their group metadata
    g16 = single_linear_graph(4096, 4096, tokens=1, setting="W16A16", stage="decode")
    assert _one(g16, ser)["cycles"] == _one(g16, pip)["cycles"]  # nothing to dequantize


def test_unfused_attention_three_ops_with_score_traffic():
    hw = load_hw("nvidia-a100-80gb")
    g = build_graph("llama2-7b", stage="prefill", seq_len=128)
    clear_caches()
    fused = estimate_graph(g, hw).to_dict()["ops"]
    un = estimate_graph(g, hw.with_updates({"policy.attention_fused": False})).to_dict()["ops"]
    names = [o["name"] for o in un]
    assert "layer.attention.qk" in names and "layer.attention.softmax" in names and "layer.attention.pv" in names
    fa = next(o for o in fused if o["name"] == "layer.attention")
    parts = [o for o in un if o["name"].startswith("layer.attention.")]
    scores = 128 * 129 / 2  # causal, empty cache
    score_bytes = 32 * scores * 2  # heads x pairs x fp16
    assert sum(o["bytes"] for o in parts) == pytest.approx(fa["bytes"] + 4 * score_bytes, rel=1e-9)
    assert sum(o["macs"] for o in parts) == fa["macs"]
    assert next(o for o in parts if o["name"].endswith("softmax"))["kind"] == "sfu"


def test_cycle_model_replays_the_terms():
    from qesim.sim.engine import simulate_graph

    hw = load_hw("nvidia-a100-80gb").with_updates({
        "terms.linear.fixed_us": 5.0, "terms.linear.memory_efficiency": 0.8, "terms.linear.compute_efficiency": 0.9,
        "terms.norm.floor_us": 20.0, "terms.elementwise.fixed_us": 3.0, "policy.attention_fused": False})
    g = build_graph("llama2-7b", stage="decode", setting="W4A16", context_len=512)
    clear_caches()
    a = estimate_graph(g, hw)
    s = simulate_graph(g, hw)
    ca, cs = np.array(a.columns["cycles"]), np.array(s.columns["cycles"])
    assert np.all(np.abs(cs / ca - 1) < 0.03)  # engine agreement per op (<= 3 %)
    norm = a.columns["name"].index("layer.input_norm")
    assert ca[norm] == pytest.approx(20e-6 * hw.frequency_hz)  # the floor binds a tiny norm in decode


def test_calibrate_recovers_known_terms_through_the_cost_model():
    from qesim.fidelity.calibrate import calibrate_table
    from qesim.fidelity.kernels import make_predictor
    from qesim.fidelity.measured import read_measured

    hw = load_hw("nvidia-a100-80gb")
    t = read_measured("qesim/fidelity/data/llmcompass")
    t = t[(t.device == "A100") & t.kernel.isin(["matmul", "softmax"])].reset_index(drop=True)
    truth = {"terms.linear.fixed_us": 20.0, "terms.linear.compute_efficiency": 0.85, "terms.linear.k_half": 64.0,
             "terms.linear.memory_efficiency": 0.8, "terms.softmax.fixed_us": 10.0,
             "terms.softmax.memory_efficiency": 0.55}
    synth = make_predictor(hw, t)(truth, np.arange(len(t)))
    fits = calibrate_table(hw, t.assign(latency_s=synth), make_predictor)
    got = {**fits["linear"].all_values, **fits["softmax"].all_values}
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=2e-3), k
    assert fits["linear"].rms_log < 1e-5 and fits["softmax"].rms_log < 1e-5


def test_e2e_check_runs_on_the_published_rows():
    import pandas as pd

    from qesim.fidelity.e2e import DATA, geomean_abs_err, run_e2e

    df = run_e2e()
    raw = pd.read_csv(DATA)
    assert df.measured_ms.tolist() == raw.measured_ms.tolist() and raw.source.str.len().min() > 20
    assert (df.none_ms <= df.stack_lo_ms + 1e-9).all() and (df.stack_lo_ms <= df.stack_ms).all()
    assert (df.stack_ms <= df.stack_hi_ms).all() and (df.stack_hi_ms <= df.harness_ms + 1e-9).all()
    wo = df.setting.isin(["W8A16", "W4A16"])  # dequant hidden under the loads: faster only where it dequantizes
    assert (df.pipelined_ms[wo] < df.stack_ms[wo]).all() and (df.pipelined_ms[~wo] == df.stack_ms[~wo]).all()
    assert set(df.context_len[df.stage == "decode"]) == {208} and set(df.lm_head_bits[wo]) == {4, 8}
    assert geomean_abs_err([10.0, -10.0]) == pytest.approx((np.exp((np.log(1.1) + abs(np.log(0.9))) / 2) - 1) * 100)


def test_vhk158_artifact_preset_divides_loads_too():
    """flightllm-vhk158-artifact = flightllm-vhk158 with the profiler's 3.2 on loads and stores as well."""
    phys, art = load_hw("flightllm-vhk158"), load_hw("flightllm-vhk158-artifact")
    assert art.terms.correction_factor == 3.2 and phys.terms.correction_factor == 1.0
    for mode in ("mm", "mv"):
        for a, b in zip(getattr(art.mpe, mode), getattr(phys.mpe, mode)):
            assert a.macs_per_cycle * 3.2 == pytest.approx(b.macs_per_cycle, rel=5e-4)
    g = build_graph("llama2-7b", stage="decode", context_len=512, setting="W8A8", density="q_proj=0.7,k_proj=0.7")
    clear_caches()
    p, a = estimate_graph(g, phys), estimate_graph(g, art)
    assert p.bound == "hbm" and a.bound == "compute"  # the artifact's model: MV-bound decode
    assert a.bytes_by_memory == p.bytes_by_memory


def test_flightllm_artifact_model_hand_computed():
    """The artifact's instruction-time formulas on a toy one-layer model (qesim.fidelity.flightllm)."""
    from qesim.fidelity.flightllm import artifact_model
    from qesim.graph.presets import get_spec

    toy = get_spec("llama2-7b").model_copy(update=dict(hidden=512, intermediate=1024, layers=1, heads=4,
                                                       head_dim=128, vocab=1000))
    d = artifact_model("decode", context_len=512, spec=toy)
    # MV cycles: q, k 512x512 at 0.7; v, o 512x512; gate, up 512 -> 1024; down 1024 -> 512 (N padded to 512)
    lin = 2 * 512 * 512 / 1024 * 0.7 + 2 * 512 * 512 / 1024 + 3 * 512 * 1024 / 1024
    ctx = 528  # 512 cached + 1, aligned to 16
    attn = 4 * (128 * 1024 + ctx * 512) / 1024  # QK^T (N = ctx padded to 512), PV (N = 128 padded to 512)
    head = 512 * 1024 / 1024  # lm_head, vocab 1000 padded to 1024
    assert d["mv_ms"] == pytest.approx((lin + attn + head) / 3.2 / 225e6 * 1e3, rel=1e-12)
    ld_bytes = 2 * 512 * 512 * 0.7 + 2 * 512 * 512 + 3 * 512 * 1024 + 2 * ctx * 512 + 512 * 1000
    assert d["ld_ms"] == pytest.approx(ld_bytes / (819.2e9 * 0.7) / 3.2 * 1e3, rel=1e-12)
    assert d["total_ms"] == max(v for k, v in d.items() if k != "total_ms") == d["mv_ms"]
    p = artifact_model("prefill", seq_len=100, spec=toy)  # aligned to 128 rows
    mm = 128 * (2 * 512 * 512 * 0.7 + 2 * 512 * 512 + 3 * 512 * 1024) / 4096 + 4 * 2 * 128 * 128 * 128 / 2 / 4096
    assert p["mm_ms"] == pytest.approx(mm / 3.2 / 225e6 * 1e3, rel=1e-12)
    with pytest.raises(ValueError):
        artifact_model("train")
