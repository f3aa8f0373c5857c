"""Energy / area / cost terms: hand-computed values and invariants (qesim.perf.terms)."""

import math

import numpy as np
import pytest

from qesim.graph.builders import build_graph
from qesim.hw.loader import load_hw, preset_names
from qesim.perf.terms import area as A
from qesim.perf.terms import energy as E
from qesim.perf.terms import tech
from qesim.perf.terms.costing import cost_graph


def test_stillmaker_corrigendum_example():
    # corrigendum of Stillmaker & Baas 2017: EnergyFactor = 0.8367 (0.9)^2 - 0.4341 (0.9) + 0.1701 = 0.4571
    assert tech.energy_factor(32, 0.9) == pytest.approx(0.4571, abs=1e-4)
    assert tech.energy_scale(45, 45, 0.9, 0.9) == pytest.approx(1.0)
    assert tech.area_scale(45, 16) == pytest.approx(0.19)  # the paper's area table
    assert tech.area_scale(7, 16) == pytest.approx(0.19 / 0.059)
    with pytest.raises(ValueError):
        tech.energy_factor(3, 0.7)


def test_sram_fit_hand_computed():
    class P:  # two published points: 8 KB 10 pJ, 32 KB 20 pJ per 64-bit access -> E ~ size^0.5
        def __init__(self, b, pj):
            self.bytes, self.pj = b, pj
    pts = [P(8192, 10.0), P(32768, 20.0)]
    assert E.sram_pj_per_byte(pts, 64, None, 8192) == pytest.approx(10.0 / 8)
    assert E.sram_pj_per_byte(pts, 64, None, 131072) == pytest.approx(40.0 / 8)
    assert E.sram_pj_per_byte(pts, 64, 32768, 131072) == pytest.approx(20.0 / 8)  # banked


def test_dynamic_and_pass_energy_hand_computed():
    counts = {"mac:w8a8": 1e6, "offchip:hbm": 1000.0, "unpriced": 5.0}
    pj = {"mac:w8a8": 0.3, "offchip:hbm": 3.9 * 8}
    d = E.dynamic_energy_j(counts, pj)
    assert set(d) == {"mac:w8a8", "offchip:hbm"}
    assert float(d["mac:w8a8"]) == pytest.approx(0.3e-6)
    assert float(d["offchip:hbm"]) == pytest.approx(31.2e-9)
    # two ops, repeats 2 and 1, times 1 ms and 3 ms, static 10 W, 4 tokens
    pe = E.pass_energy([1e-3, 2e-3], [2, 1], [1e-3, 3e-3], 10.0, 4)
    assert pe.total_j == pytest.approx(2 * 1e-3 + 2e-3 + 10 * (2 * 1e-3 + 3e-3))
    assert pe.per_token_j == pytest.approx(pe.total_j / 4)
    assert pe.avg_power_w == pytest.approx(pe.total_j / 5e-3)
    assert pe.op_j.sum(axis=0) == pytest.approx(pe.total_j)


def test_pass_energy_vectorised_over_points():
    dyn = np.array([[1.0, 2.0], [3.0, 4.0]])  # (ops, points)
    t = np.array([[1.0, 1.0], [2.0, 1.0]])
    pe = E.pass_energy(dyn, [1, 1], t, np.array([0.0, 1.0]), 1)
    np.testing.assert_allclose(pe.total_j, [4.0, 6.0 + 2.0])
    for i in range(2):  # n = 1 is the scalar estimate
        one = E.pass_energy(dyn[:, i], [1, 1], t[:, i], [0.0, 1.0][i], 1)
        assert float(one.total_j) == pytest.approx(pe.total_j[i])


def test_die_cost_hand_computed():
    a = 100.0
    dpw = math.pi * 150 ** 2 / a - math.pi * 300 / math.sqrt(2 * a)
    y = (1 + a * 0.001 / 3) ** -3
    assert float(A.dies_per_wafer(a)) == pytest.approx(dpw)
    assert float(A.die_yield(a, 0.001)) == pytest.approx(y)
    assert float(A.die_cost_usd(a, 4000.0, 0.001)) == pytest.approx(4000.0 / (dpw * y))
    # bigger dies: fewer per wafer, lower yield, dearer
    c = A.die_cost_usd(np.array([50.0, 100.0, 400.0, 800.0]), 4000.0, 0.001)
    assert np.all(np.diff(c) > 0)


def test_sram_area_hand_computed_and_monotone():
    eff = [0.076, 0.142, 0.247, 0.393, 0.559, 0.704, 0.526, 0.602]
    # 64 KiB: one array at efficiency 0.559
    assert float(A.sram_area_mm2(65536, 0.17, eff)) == pytest.approx(65536 * 8 * 0.17 / 0.559 / 1e6)
    # 1 MiB: two 512 KiB banks
    assert float(A.sram_area_mm2(2 ** 20, 0.17, eff)) == pytest.approx(2 * 2 ** 19 * 8 * 0.17 / 0.602 / 1e6)
    sizes = np.unique(np.round(np.geomspace(1, 2 ** 28, 400)))
    area = A.sram_area_mm2(sizes, 0.17, eff)
    assert np.all(np.diff(area) >= 0)  # more buffer never less SRAM area


def test_more_buffer_never_less_area_on_the_npu():
    hw = load_hw("qe-paper-npu")
    sizes = np.array([2 ** 16, 2 ** 18, 2 ** 20, 3 * 2 ** 20, 2 ** 23])
    for b in ("weight_bytes", "act_bytes", "out_bytes", "adapter_bytes"):
        tot = A.area_breakdown_mm2(hw, {b: sizes})["total"]
        assert np.all(np.diff(tot) > 0), b
    mac = A.area_breakdown_mm2(hw, {"mac_scale": np.array([0.5, 1.0, 2.0])})["mpe"]
    np.testing.assert_allclose(mac / mac[1], [0.5, 1.0, 2.0])


def _per_action(hw_name):
    """``hw_name`` with the qe-paper-npu's per-action energy section (so DRAM energy is priced)."""
    hw = load_hw(hw_name)
    if hw.energy.per_action:
        return hw
    npu = load_hw("qe-paper-npu")
    return hw.with_updates({"energy": npu.energy.model_dump(), "area": npu.area.model_dump()})


@pytest.mark.parametrize("hw_name", ["qe-paper-npu", "flightllm-u280", "flightllm-vhk158"])
@pytest.mark.parametrize("stage", ["prefill", "decode"])
def test_fewer_weight_bits_never_more_dram_energy(hw_name, stage):
    hw = _per_action(hw_name)
    prev = None
    for setting in ("W16A16", "W8A8", "W4A8", "W3A8", "W2A8"):
        g = build_graph("llama2-7b", stage=stage, seq_len=64, context_len=128, setting=setting)
        b = cost_graph(g, hw).breakdown_by_class()
        dram = b["hbm"] + b["ddr"]
        assert dram > 0
        if prev is not None:
            assert dram <= prev * (1 + 1e-12), setting
        prev = dram


def test_sweep_points_equal_scalar_estimates():
    """The energy the cost model computes over n points equals n scalar estimates (n = 1)."""
    from qesim.perf.estimate import compiled_graph
    from qesim.perf.points import HwPoints
    hw = load_hw("qe-paper-npu")
    g = build_graph("llama2-7b", stage="decode", context_len=256, setting="W4A8", method="qe")
    over = {"hbm.bandwidth_gbps": np.array([200.0, 460.0, 1200.0]),
            "buffers.weight_bytes": np.array([2 ** 18, 2 ** 22, 2 ** 24]),
            "mpe.mm.0.macs_per_cycle": np.array([8192.0, 16384.0, 65536.0])}
    r = compiled_graph(g, hw).evaluate(HwPoints(hw, 3, over)).energy
    for i in range(3):
        one = cost_graph(g, hw, over={k: v[i] for k, v in over.items()})
        assert r.per_token_j[i] == pytest.approx(one.energy_per_token_j, rel=1e-12)
        assert r.area_mm2[i] == pytest.approx(one.area_mm2, rel=1e-12)
        assert r.cost_usd[i] == pytest.approx(one.cost_usd, rel=1e-12)
    assert r.area_mm2[0] < r.area_mm2[1] < r.area_mm2[2]  # bigger buffer, more MACs: more area


@pytest.mark.parametrize("hw_name", preset_names())
def test_every_preset_energy_area_and_sum_over_ops(hw_name):
    hw = load_hw(hw_name)
    g = build_graph("llama2-7b", stage="decode", context_len=256, setting="W4A8", method="qe")
    r = cost_graph(g, hw)
    assert r.model in ("per-action", "board-power"), (  # every preset says what it knows
        f"{hw_name}: no energy section; add energy.board_power_w (sourced) or per-action energies")
    assert r.energy_per_token_j > 0 and r.avg_power_w > 0
    assert sum(r.op_energy_j) == pytest.approx(r.energy_j, rel=1e-9)  # energy = sum over ops
    assert sum(r.breakdown_by_class().values()) == pytest.approx(r.energy_j, rel=1e-9)
    if r.model == "board-power":  # energy = board power x time, nothing invented
        assert r.avg_power_w == pytest.approx(hw.energy.board_power_w)
        assert r.energy_j == pytest.approx(hw.energy.board_power_w * r.latency_s)
    else:
        assert r.area_mm2 > 0 and r.cost_usd > 0
        b = r.breakdown_by_class()
        assert b["mac"] > 0 and b["hbm"] > 0 and b["sram"] > 0 and b["static"] > 0
    if hw_name == "nvidia-a100":
        assert r.area_mm2 == pytest.approx(826.0)


def test_npu_dynamic_energy_hand_computed_for_one_linear():
    from qesim.graph.ir import LayerGraph, LinearOp
    hw = load_hw("qe-paper-npu").with_updates({"policy.prefill.activations_offchip": False,
                                               "policy.count_channel_scales": False})
    op = LinearOp(name="l", in_features=256, out_features=256, tokens=1, weight_bits=8, act_bits=8)
    g = LayerGraph(name="one", model="x", stage="prefill", seq_len=1, context_len=0, batch=1, ops=[op])
    r = cost_graph(g, hw)
    k = tech.energy_scale(45, 16, 0.9, 0.85)
    a = r.op_actions[0]
    assert a["mac:w8a8"] == 256 * 256
    assert a["sram_write:weight"] == 256 * 256  # int8 weights, loaded once
    assert a["sram_read:weight"] == 256 * 256  # one m-tile: each weight read once
    mac_j = 256 * 256 * 0.3 * k * 1e-12
    hbm_j = 256 * 256 * 8 * 3.9e-12
    assert r.op_breakdown_j[0]["mac"] == pytest.approx(mac_j)
    assert r.op_breakdown_j[0]["hbm"] == pytest.approx(hbm_j)


def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "qesim.cli", *args], capture_output=True, text=True)


def test_estimate_json_and_energy_command_carry_energy():
    import json
    r = _cli("estimate", "--model", "llama2-7b", "--hw", "qe-paper-npu", "--setting", "W4A8", "--method", "qe",
             "--stage", "decode", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for k in ("energy_per_token_j", "avg_power_w", "area_mm2", "cost_usd"):
        assert d[k] > 0
    e = d["energy"]
    assert sum(o["energy_j"] for o in e["ops"]) == pytest.approx(e["energy_j"])
    assert len(e["ops"]) == len(d["ops"])
    r2 = _cli("energy", "--model", "llama2-7b", "--hw", "qe-paper-npu", "--setting", "W4A8", "--method", "qe",
              "--stage", "decode", "--json")
    assert json.loads(r2.stdout)["energy_j"] == pytest.approx(e["energy_j"])


def test_bad_input_is_one_line_exit_2():
    r = _cli("energy", "--hw", "qe-paper-npu")
    assert r.returncode == 2 and "--model" in r.stderr and "Traceback" not in r.stderr
    r = _cli("explore", "--port", "0")
    assert r.returncode == 2 and "--port" in r.stderr and "Traceback" not in r.stderr
    r = _cli("explore", "--hw", "no-such-hw")
    assert r.returncode == 2 and "no-such-hw" in r.stderr and "Traceback" not in r.stderr
