"""Table 8: the general model on single-linear graphs under qe-paper-npu's assumptions."""

import pytest

from qesim.hw.loader import load_hw
from qesim.report.table8 import ASSUMPTIONS, cell_speedup, orderings, reproduce, sensitivity


@pytest.fixture(scope="module")
def paper_hw():
    return load_hw("qe-paper-npu")


def test_cells_within_2pct_and_orderings(paper_hw):
    df = reproduce(paper_hw)
    assert len(df) == 9
    assert df.error_pct.abs().max() <= 2.0
    assert all(ok for _, ok in orderings(df))


def test_flightllm_is_compute_bound_and_far_from_paper():
    df = reproduce(load_hw("flightllm-u280"))
    assert (df.bound == "compute").all()
    assert (df.qesim_speedup < 2.5).all()  # compute-bound: bits buy at most the MAC-packing ratio
    w3 = df[df.setting == "W3A16"].qesim_speedup
    w4 = df[df.setting == "W4A8"].qesim_speedup
    assert (w3.values < w4.values).all()  # A16 computes at the 16-bit rate: the paper's ordering flips


def test_sensitivity_has_every_assumption(paper_hw):
    s = sensitivity(paper_hw)
    assert len(s) == 1 + len(ASSUMPTIONS)
    flips = dict(zip(s.assumption, s.max_abs_error_pct))
    # the paper's figures rest on: compute hidden, activations streamed, adapters resident
    assert flips["prefill compute hidden behind memory"] > 20
    assert flips["activations streamed off-chip (x in, y out)"] > 10
    assert flips["QE adapters + router resident on chip"] > 10


def test_prefill_trend_with_sequence_length(paper_hw):
    # FP16 output traffic grows with s: speedups fall with s (facts 5, bandwidth-roofline predictions
    # 3.96 at s=1 and 2.75 at s=512; beyond ~1000 tokens the fp16 input no longer fits the act buffer)
    sp = [cell_speedup(paper_hw, 3584, 3584, "W4A8", "prefill", s) for s in (1, 16, 128, 512)]
    assert all(a > b for a, b in zip(sp, sp[1:]))
    assert sp[0] == pytest.approx(3.96, abs=0.06) and sp[-1] == pytest.approx(2.75, abs=0.06)
