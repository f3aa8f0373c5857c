"""speed_vs_accuracy report from an accuracy.csv (no torch needed)."""

import csv

from qesim.cli import main


def test_speed_report_from_csv(tmp_path):
    src = tmp_path / "accuracy.csv"
    rows = [("smollm2-135m", "fp", "W16A16", "ppl", 20.0), ("smollm2-135m", "rtn", "W4A8", "ppl", 40.0),
            ("smollm2-135m", "qe", "W4A8", "ppl", 25.0), ("smollm2-135m", "lqer", "W3A16", "ppl", 30.0),
            ("smollm2-135m", "rtn", "W4A8", "block_rel_err_mean", 0.3),
            ("smollm2-135m", "rtn", "W4A8", "ppl_lo", 36.5), ("smollm2-135m", "rtn", "W4A8", "ppl_hi", 44.25)]
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "method", "setting", "metric", "value"])
        w.writerows(rows)
    assert main(["accuracy", "--speed-from", str(src), "--out", str(tmp_path / "out")]) == 0
    out = list(csv.DictReader(open(tmp_path / "out" / "speed_vs_accuracy.csv")))
    by = {(r["method"], r["setting"]): r for r in out}
    assert set(by) == {("fp", "W16A16"), ("rtn", "W4A8"), ("qe", "W4A8"), ("lqer", "W3A16")}
    for h in ("flightllm-u280", "qe-paper-npu"):
        assert float(by[("fp", "W16A16")][f"{h}.decode_speedup"]) == 1.0
        # decode is weight-bandwidth bound: 4-bit weights beat fp16, adapters cost a little
        assert float(by[("rtn", "W4A8")][f"{h}.decode_speedup"]) > 1.5
        assert float(by[("qe", "W4A8")][f"{h}.decode_speedup"]) <= float(by[("rtn", "W4A8")][f"{h}.decode_speedup"])
    assert (tmp_path / "out" / "speed_vs_accuracy.png").stat().st_size > 1000
    md = (tmp_path / "out" / "speed_vs_accuracy.md").read_text()
    assert "Produced by" in md and "| rtn | W4A8 | 40.000 [36.500, 44.250] |" in md and "| qe | W4A8 | 25.000 |" in md
    assert by[("rtn", "W4A8")]["ppl_lo"] == "36.5" and by[("qe", "W4A8")]["ppl_lo"] == ""
    assert main(["accuracy", "--speed-from", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
