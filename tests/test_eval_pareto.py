"""Budget-matched Pareto machinery (qesim.eval.pareto + report) on a tiny random Llama."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from qesim.eval.pareto import ParetoConfig, budget_matches, front, run_pareto_on  # noqa: E402


@pytest.fixture(scope="module")
def result(tiny_llama):
    m = tiny_llama()
    ids = torch.randint(0, 256, (14, 32), generator=torch.Generator().manual_seed(1))
    pc = ParetoConfig(model="tiny", plain=("rtn",), ranks=(4, 16, 48), qe_configs=((4, 4, 2),), seq_len=32,
                      hw=("qe-paper-npu",))
    return run_pareto_on(m, "causal", [{"input_ids": ids[i:i + 4]} for i in range(0, 8, 4)],
                         {"pydoc": ids[8:12], "licenses": ids[12:14]}, pc, "tiny")


def test_points_costs_and_intervals(result):
    r = result
    labels = [p.label for p in r.points]
    assert labels == ["rtn", "lqer-4", "lqer-16", "lqer-48", "aser-4", "aser-16", "aser-48", "qe-4+2x4"]
    by = {p.label: p for p in r.points}
    for p in r.points:
        for ev in ("pydoc", "licenses"):
            iv = p.metric[ev]
            assert iv.lo <= iv.value <= iv.hi
        assert set(p.latency) == {("qe-paper-npu", "prefill"), ("qe-paper-npu", "decode")}
    assert by["rtn"].memory_bytes == 0
    # adapter bytes grow linearly with rank: 7 linears x 2 layers x r x (in + out) x 2 B
    d = by["lqer-16"].adapter_bytes - by["lqer-4"].adapter_bytes
    shapes = [(64, 64), (64, 32), (64, 32), (64, 64), (64, 128), (64, 128), (128, 64)]
    assert d == pytest.approx(12 * 2 * 2 * sum(i + o for i, o in shapes))
    assert by["aser-4"].scale_bytes > 0 and by["lqer-4"].scale_bytes == 0  # ASER/QE input scaling
    for stage in ("prefill", "decode"):
        assert by["lqer-48"].latency[("qe-paper-npu", stage)] >= by["lqer-4"].latency[("qe-paper-npu", stage)]
    q = by["qe-4+2x4"]
    assert (q.active_rank, q.stored_rank) == (8, 12)
    assert q.extra["touched_per_128"] <= 2 and 0 <= q.extra["cs_overlap"] <= 1


def test_forked_jobs_give_the_same_points(tiny_llama, result):
    """jobs=2 forks after the calibration capture; every fit seeds its own generators, so the
    points (order, metrics, intervals, costs) equal the in-process run's."""
    m = tiny_llama()
    ids = torch.randint(0, 256, (14, 32), generator=torch.Generator().manual_seed(1))
    pc = ParetoConfig(model="tiny", plain=("rtn",), ranks=(4, 16, 48), qe_configs=((4, 4, 2),), seq_len=32,
                      hw=("qe-paper-npu",), jobs=2, threads=2)
    r2 = run_pareto_on(m, "causal", [{"input_ids": ids[i:i + 4]} for i in range(0, 8, 4)],
                       {"pydoc": ids[8:12], "licenses": ids[12:14]}, pc, "tiny")
    assert [p.label for p in r2.points] == [p.label for p in result.points]
    for a, b in zip(result.points, r2.points):
        for ev in ("pydoc", "licenses"):
            assert b.metric[ev].value == pytest.approx(a.metric[ev].value, rel=1e-6)
            assert (b.metric[ev].lo, b.metric[ev].hi) == pytest.approx((a.metric[ev].lo, a.metric[ev].hi), rel=1e-6)
        assert b.latency == pytest.approx(a.latency, rel=1e-9)
        assert (b.adapter_bytes, b.scale_bytes) == (a.adapter_bytes, a.scale_bytes)


def test_fronts_and_budget_matches(result, tmp_path):
    r = result
    val = lambda p: p.metric["pydoc"].value  # noqa: E731
    fr = front(r.points, lambda p: p.memory_bytes, val, True)
    assert fr[0].memory_bytes == min(p.memory_bytes for p in r.points)
    assert all(val(b) < val(a) for a, b in zip(fr, fr[1:]))  # strictly improving along the front
    rows = budget_matches(r)
    budgets = {x["budget"] for x in rows}
    assert {"active rank", "stored memory", "latency qe-paper-npu prefill", "latency qe-paper-npu decode"} <= budgets
    mem = next(x for x in rows if x["budget"] == "stored memory")
    qe = next(p for p in r.points if p.method == "qe")
    base = next(p for p in r.points if p.label == mem["baseline"])
    assert base.memory_bytes <= qe.memory_bytes
    from qesim.report.quant_pareto import write_pareto_report

    paths = write_pareto_report([r], tmp_path, "qesim accuracy --pareto (test)", 1.0, 1.0)
    md = (tmp_path / "quant_pareto.md").read_text()
    assert "Where QE sits" in md and "significant" in md and "qesim accuracy --pareto (test)" in md
    assert (tmp_path / "quant_pareto.csv").read_text().count("\n") == len(r.points) + 2
    assert any(str(p).endswith(".png") for p in paths)
    # wall times only in the timing file: a rerun with other timings writes the same report
    md1, csv1 = md, (tmp_path / "quant_pareto.csv").read_text()
    png1 = (tmp_path / "quant_pareto.png").read_bytes()
    write_pareto_report([r], tmp_path, "qesim accuracy --pareto (test)", 123.0, 45.0)
    assert (tmp_path / "quant_pareto.png").read_bytes() == png1
    assert (tmp_path / "quant_pareto.md").read_text() == md1
    assert (tmp_path / "quant_pareto.csv").read_text() == csv1
    timing = (tmp_path / "quant_pareto_timing.csv").read_text()
    assert "all,command_wall_s,123.0" in timing and "qe-4+2x4.fit_s" in timing
    assert "calib_capture_s" not in md1 and "wall" not in md1.split("\n")[2]


def test_progress_bars_on_calibration_and_fits(result, capsys, monkeypatch):
    """quiet=False shows tqdm bars (calibration capture, per-block fit) on stderr; quiet=True none."""
    from qesim.quant.apply import quantize_model
    from qesim.quant.calib import Calibration

    monkeypatch.delenv("QESIM_PROGRESS", raising=False)
    from transformers import LlamaConfig, LlamaForCausalLM

    m = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(0))
    cal = Calibration.build(m, [{"input_ids": ids}], quiet=False)
    quantize_model(m, "rtn", "W4A8", cal, progress=True)
    err = capsys.readouterr().err
    assert "calibration capture" in err and "calibrate rtn W4A8" in err and "2/2" in err
    cal = Calibration.build(m, [{"input_ids": ids}])
    quantize_model(m, "rtn", "W4A8", cal)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_pareto_command_quick_minilm(tmp_path):
    from qesim.cli import main

    assert main(["accuracy", "--pareto", "--quick", "--pareto-models", "minilm-l6", "--out", str(tmp_path),
                 "--quiet"]) == 0
    assert "minilm-l6" in (tmp_path / "quant_pareto.md").read_text()


def test_pareto_jobs_must_be_positive(tmp_path, capsys):
    from qesim.cli import main

    assert main(["accuracy", "--pareto", "--jobs", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--jobs (0)" in err[0] and ">= 1" in err[0]
    assert not list((tmp_path / "o").glob("*"))  # nothing written
