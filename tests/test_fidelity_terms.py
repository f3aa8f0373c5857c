"""Fidelity terms (qesim.perf.terms) hand-computed on a toy config; neutral defaults change nothing."""

import numpy as np
import pytest

from qesim.hw.config import OP_CLASSES, OpClassTerms, Terms
from qesim.hw.loader import load_hw
from qesim.perf import terms as T

F = 1e9  # toy clock: 1 GHz, so 1 us = 1000 cycles


def test_defaults_are_neutral():
    t = Terms()
    for c in OP_CLASSES:
        oc = t.op_class(c)
        assert (oc.fixed_us, oc.fixed_cycles, oc.issue_cycles_per_step, oc.floor_us) == (0, 0, 0, 0)
        assert oc.compute_efficiency == 1.0 and oc.k_half == 0.0 and oc.memory_efficiency is None
    assert t.wave_tile is None and t.dequant.unit == "none" and t.correction_factor == 1.0
    work = np.array([0.0, 1.0, 123.456, 1e12])
    assert np.array_equal(T.call_cycles(work, F), work)
    assert np.array_equal(T.corrected(work), work)
    assert np.array_equal(T.compute_efficiency([1, 64], [1, 64], [1, 64]), [1.0, 1.0])
    # every preset loads with the neutral block unless it sets one
    for name in ("qe-paper-npu", "flightllm-u280"):
        assert load_hw(name).terms == Terms()


def test_call_cycles_fixed_issue_floor():
    # fixed 2 us + 50 cycles + 3 steps x 10 cycles + work 1000 = 2000 + 50 + 30 + 1000 = 3080 cycles
    assert T.call_cycles(1000.0, F, steps=3, fixed_us=2.0, fixed_cycles=50, issue_cycles_per_step=10) == 3080.0
    # floor 5 us = 5000 cycles wins over 3080; a long op (work 1e4) is above the floor
    got = T.call_cycles(np.array([1000.0, 10000.0]), F, steps=3, fixed_us=2.0, fixed_cycles=50,
                        issue_cycles_per_step=10, floor_us=5.0)
    assert got.tolist() == [5000.0, 12080.0]
    # arrays over design points broadcast: two clocks
    assert T.call_cycles(0.0, np.array([1e9, 2e9]), fixed_us=1.0).tolist() == [1000.0, 2000.0]


def test_correction_factor():
    assert T.corrected(np.array([320.0, 3.2]), 3.2).tolist() == pytest.approx([100.0, 1.0])


def test_wave_efficiency_hand_computed():
    # 256 x 1024 output, 128 x 128 tiles -> 2 * 8 = 16 tiles on 6 cores: 3 waves of 6 -> 16 / 18
    assert T.wave_efficiency(256, 1024, 128, 128, 6) == pytest.approx(16 / 18)
    # exactly 12 tiles on 6 cores: no loss; 1 tile on 108 cores: 1/108
    assert T.wave_efficiency(256, 768, 128, 128, 6) == 1.0
    assert T.wave_efficiency(1, 1, 128, 128, 108) == pytest.approx(1 / 108)
    # padding inside a tile is not counted (M = 129 -> 2 tile rows)
    assert T.wave_efficiency(129, 128, 128, 128, 2) == 1.0


def test_k_rolloff_and_combined_efficiency():
    assert T.k_rolloff(384, 128) == pytest.approx(0.75)
    assert T.k_rolloff(np.array([1, 4096]), 0.0).tolist() == [1.0, 1.0]
    eff = T.compute_efficiency(256, 1024, 384, peak_fraction=0.9, k_half=128, wave_tile=(128, 128), cores=6)
    assert eff == pytest.approx(0.9 * 0.75 * 16 / 18)


def test_memory_bytes_per_cycle():
    # 2000 GB/s at 0.8 on a 1 GHz clock: 1600 bytes/cycle
    assert T.memory_bytes_per_cycle(2000, F, 0.8) == pytest.approx(1600.0)


def test_dequant_hand_computed():
    # 4096 x 4096 int4 weights, g128: 16.78M weights, 131072 groups; 1.5 ops/weight, 4 ops/group
    ops = T.dequant_ops(4096 * 4096, 4096 * 4096 / 128, 1.5, 4)
    assert ops == pytest.approx(4096 * 4096 * 1.5 + 131072 * 4)
    assert T.dequant_cycles(ops, 6912) == pytest.approx((4096 * 4096 * 1.5 + 131072 * 4) / 6912)


def test_unfused_attention_bytes():
    # batch 1, 32 heads, 128 x 128 scores (non-causal), fp16: 32 * 16384 * 2 = 1 MiB per pass
    b = T.unfused_attention_bytes(1, 32, 128 * 128, 16)
    assert set(b) == {"qk_store", "softmax_load", "softmax_store", "pv_load"}
    assert all(v == 1048576.0 for v in b.values())


def test_op_class_mapping():
    assert T.op_class("linear") == T.op_class("moe") == "linear"
    assert T.op_class("sfu", "softmax") == "softmax"
    assert T.op_class("sfu", "rmsnorm") == T.op_class("sfu", "layernorm") == "norm"
    assert T.op_class("sfu", "gelu") == T.op_class("sfu", "quantize") == "elementwise"
    assert T.op_class("attention") == "attention" and T.op_class("embedding") == "embedding"
    assert set(OP_CLASSES) == {"linear", "attention", "softmax", "norm", "elementwise", "embedding"}
    with pytest.raises(ValueError):
        T.op_class("conv")


def test_config_bounds():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        OpClassTerms(compute_efficiency=1.5)
    with pytest.raises(ValidationError):
        OpClassTerms(memory_efficiency=0.0)
    with pytest.raises(ValidationError):
        OpClassTerms(fixed_us=-1)
    with pytest.raises(ValidationError):
        Terms(correction_factor=0)


@pytest.mark.parametrize("name,gbps,fp16_tflops", [("nvidia-a100-80gb", 2039, 312), ("nvidia-h100-sxm", 3352, 989.4),
                                                   ("amd-mi210", 1638.4, 181)])
def test_datasheet_presets(name, gbps, fp16_tflops):
    import re

    from qesim.hw.loader import config_dir

    hw = load_hw(name)
    assert hw.hbm.bandwidth_gbps == gbps
    assert 2 * hw.mpe.rate("mm", 16, 16) * hw.frequency_hz / 1e12 == pytest.approx(fp16_tflops, rel=2e-3)
    # datasheet only: the fitted fields are neutral (they live in the -calibrated configs); the structural
    # assumptions (wave tile, where dequantization runs) are set
    for c in OP_CLASSES:  # the NVIDIA presets carry a published attention efficiency (FlashAttention papers)
        want = OpClassTerms(compute_efficiency=hw.terms.attention.compute_efficiency) if c == "attention" else OpClassTerms()
        assert hw.terms.op_class(c) == want
    assert hw.terms.attention.compute_efficiency == {"nvidia-a100-80gb": 0.615, "nvidia-h100-sxm": 0.35}.get(name, 1.0)
    assert hw.terms.correction_factor == 1.0 and hw.terms.wave_tile is not None and hw.terms.dequant.unit == "sfu"
    # every line carrying a number has a source comment or says it is an assumption
    for line in (config_dir() / f"{name}.yaml").read_text().splitlines():
        body = line.split("#")[0]
        if not re.match(r"^\s*(- )?\{?[\w.]+:", body) or body.strip().startswith(("name:", "description:")):
            continue
        if re.search(r"\b\d", body.split(":", 1)[1]):
            assert "#" in line, f"{name}: number without a source comment: {line!r}"
