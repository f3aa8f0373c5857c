"""Design-space exploration: space files, sweep rows against the per-point estimate, Pareto fronts."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qesim.dse.evaluate import OUTPUT_COLUMNS, Evaluator, evaluate_space
from qesim.dse.pareto import pareto_front, pareto_mask
from qesim.dse.space import load_space, space_from_dict
from qesim.errors import InputError
from qesim.graph.builders import build_graph, single_linear_graph
from qesim.hw.loader import load_hw
from qesim.perf.model import estimate_graph

pytest.importorskip("pyarrow")


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


# ----------------------------------------------------------------------------- fast == estimate_graph
def _compare(fast: pd.DataFrame, exact: pd.DataFrame) -> None:
    assert list(fast.point_id) == list(exact.point_id)
    for c in ("cycles", "latency_s", "tokens_per_s", "speedup", "baseline_latency_s", "hbm_bytes", "ddr_bytes",
              "util_mpe", "util_sfu", "util_hbm", "util_ddr", "sram_bytes", "mpe_macs_per_cycle"):
        np.testing.assert_allclose(fast[c].to_numpy(float), exact[c].to_numpy(float), rtol=1e-9, atol=0, err_msg=c)
    assert list(fast.bound) == list(exact.bound)


@pytest.mark.parametrize("base", ["flightllm-u280", "qe-paper-npu",
                                  pytest.param("flightllm-vhk158", marks=pytest.mark.slow)])
def test_fast_path_equals_estimate_graph(base):
    """Random hardware points (vector and structural fields) on 2 stages x 4 settings/methods."""
    sp = space_from_dict({"space": {
        "base": base, "sampling": "random", "samples": 4, "seed": 3,
        "hw": {
            "hbm.bandwidth_gbps": {"min": 50, "max": 4000, "scale": "log"},
            "frequency_mhz": {"min": 100, "max": 500},
            "scale.macs": {"min": 0.1, "max": 8, "scale": "log"},
            "mpe.mv.0.macs_per_cycle": [512, 4096, 65536],
            "buffers.weight_bytes": [8192, 262144, 4194304],
            "buffers.act_bytes": [16384, 8388608],
            "sfu.lanes": [8, 48, 256],
        },
        "workload": {"model": "qwen2vl-2b", "setting": ["W16A16", "W4A8", "W3A16", "W4A4"],
                     "method": ["qe", "lqer"]},
        "scenarios": [{"stage": "prefill", "seq_len": 100}, {"stage": "decode", "context_len": 300}],
    }}, "test")
    fast = evaluate_space(sp)
    exact = evaluate_space(sp, exact=True)
    _compare(fast, exact)
    assert set(OUTPUT_COLUMNS) <= set(fast.columns)


def test_fast_path_policy_switches_and_sparsity():
    """Structural policy fields (compute hidden, double buffering, placement, SFU fusion) re-plan per group."""
    sp = space_from_dict({"space": {
        "base": "flightllm-u280",
        "hw": {
            "policy.prefill.compute_hidden": [False, True],
            "policy.double_buffering": [True, False],
            "policy.adapters_resident": [False, True],
            "placement.activations": ["hbm", "ddr"],
            "policy.sfu_fusion": [True, False],
        },
        "workload": {"model": "qwen2vl-2b", "setting": ["W4A8", "W3A16"], "method": "qe"},
        "scenarios": [{"density": 1.0, "setting": "W4A8"}, {"density": 0.5, "setting": "W3A16"}],
    }}, "test")
    _compare(evaluate_space(sp), evaluate_space(sp, exact=True))


def test_points_evaluation_matches_per_point_estimates():
    """One CompiledGraph evaluated at 3 points (bandwidth, clock and a buffer size per point) equals
    the n = 1 estimate of each point's config: totals, per-op cycles, MPE cycles, bound and tiles."""
    from qesim.perf.compiled import CompiledGraph
    from qesim.perf.points import HwPoints

    hw = load_hw("flightllm-u280")
    over = {"hbm.bandwidth_gbps": [460.0, 100.0, 2000.0], "frequency_mhz": [225.0, 300.0, 150.0],
            "buffers.weight_bytes": [float(hw.buffers.weight_bytes), 65536.0, float(1 << 22)]}
    for g in (build_graph("qwen2vl-7b", stage="prefill", seq_len=128, setting="W4A8", method="qe"),
              build_graph("qwen2vl-7b", stage="decode", context_len=512, setting="W3A16", method="qe"),
              build_graph("qwen2vl-2b", stage="prefill", seq_len=77, setting="W4A8", method="qe"),
              single_linear_graph(3584, 18944, tokens=128, setting="W4A6", method="qe")):
        res = CompiledGraph(g, hw).evaluate(HwPoints(hw, 3, over), detail=True)
        for i in range(3):
            est = estimate_graph(g, hw.with_updates({k: (int(v[i]) if k.startswith("buffers") else v[i])
                                                     for k, v in over.items()}))
            assert res.cycles[i] == pytest.approx(est.cycles, rel=1e-12)
            assert res.bound[i] == est.bound
            bound = res.timed.bound()[:, i]
            for k, row in enumerate(est.ops.itertuples()):
                c = res.costs[k]
                assert c.name == row.name
                assert res.timed.cycles[k, i] == pytest.approx(row.cycles, rel=1e-12)
                assert bound[k] == row.bound
                assert np.broadcast_to(c.mpe_cycles, (3,))[i] == pytest.approx(row.mpe_cycles, rel=1e-12)
                assert (c.tile_at(i).describe() if c.tile_at else "") == row.tile


# ----------------------------------------------------------------------------- space files
GOOD = """\
space:
  base: flightllm-u280
  hw:
    hbm.bandwidth_gbps: [230, 460]
    mpe.mm.0.macs_per_cycle: {min: 4096, max: 16384, num: 3, scale: log}
    buffers.weight_bytes: {min: 1048576, max: 3145728, step: 1048576}
  workload:
    model: qwen2vl-2b
    setting: [W16A16, W4A8]
    method: qe
"""


def test_space_grid_counts_and_types(tmp_path):
    sp = load_space(_write(tmp_path, GOOD))
    assert len(sp) == 2 * 3 * 3 * 2
    pts = sp.points()
    assert list(pts.point_id) == list(range(len(sp)))
    assert sorted(set(pts["mpe.mm.0.macs_per_cycle"])) == [4096.0, 8192.0, 16384.0]
    assert sorted(set(pts["buffers.weight_bytes"])) == [1048576, 2097152, 3145728]
    assert pts["buffers.weight_bytes"].dtype.kind == "i"
    # workload-major: the first half is W16A16
    assert set(pts.setting[: len(sp) // 2]) == {"W16A16"}


def test_random_sampling_is_seeded():
    spec = {"space": {"sampling": "random", "samples": 50, "seed": 7,
                      "hw": {"hbm.bandwidth_gbps": {"min": 100, "max": 1000},
                             "buffers.act_bytes": {"min": 4096, "max": 1 << 22, "scale": "log"}},
                      "workload": {"model": "qwen2vl-2b"}}}
    a = space_from_dict(spec, "t").points()
    b = space_from_dict(spec, "t").points()
    pd.testing.assert_frame_equal(a, b)
    assert a["hbm.bandwidth_gbps"].between(100, 1000).all()
    assert a["buffers.act_bytes"].dtype.kind == "i"
    spec["space"]["seed"] = 8
    assert not space_from_dict(spec, "t").points().equals(a)


@pytest.mark.parametrize("snippet, field, words", [
    ("hw:\n    hbm.bandwith_gbps: [1, 2]\n", "space.hw.hbm.bandwith_gbps", "unknown hardware field"),
    ("hw:\n    hbm.bandwidth_gbps: []\n", "space.hw.hbm.bandwidth_gbps", "empty"),
    ("hw:\n    hbm.bandwidth_gbps: {min: 500, max: 100, num: 3}\n", "space.hw.hbm.bandwidth_gbps", "empty range"),
    ("hw:\n    hbm.bandwidth_gbps: [fast, 100]\n", "space.hw.hbm.bandwidth_gbps", "number"),
    ("hw:\n    buffers.weight_bytes: [0.5]\n", "buffers.weight_bytes", ""),
    ("hw:\n    hbm.efficiency: [0.5, 1.5]\n", "hbm.efficiency", "less than or equal"),
    ("hw:\n    mpe.mm.9.macs_per_cycle: [1]\n", "space.hw.mpe.mm.9.macs_per_cycle", "unknown"),
    ("hw:\n    hbm: [1]\n", "space.hw.hbm", "group of fields"),
    ("workload:\n    setting: [W4A8, W99]\n", "space.workload.setting", "W99"),
    ("workload:\n    modle: qwen2vl-2b\n", "space.workload.modle", "did you mean model"),
    ("workload:\n    stage: []\n", "space.workload.stage", "empty"),
    ("sampling: random\n", "space.samples", "samples"),
    ("hw_axes: {}\n", "space.hw_axes", "unknown key"),
])
def test_bad_space_files_name_the_field(tmp_path, snippet, field, words):
    p = _write(tmp_path, "space:\n  base: flightllm-u280\n  " + snippet.replace("\n", "\n  ").rstrip() + "\n")
    with pytest.raises(InputError) as ei:
        load_space(p)
    msg = str(ei.value)
    assert str(p) in msg and field in msg and words in msg
    assert "\n" not in msg


def test_bad_space_via_cli_writes_nothing_and_keeps_old_results(tmp_path, capsys):
    from qesim.cli import main

    good = _write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert main(["sweep", str(good), "--out", str(out), "--quiet"]) == 0
    assert "wrote " in capsys.readouterr().err  # --quiet silences progress, not the paths written
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = _write(tmp_path, GOOD.replace("hbm.bandwidth_gbps", "hbm.bandwidth_gbs"), "bad.yaml")
    assert main(["sweep", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "space.hw.hbm.bandwidth_gbs" in err[0]
    # rerunning the good space without --resume refuses instead of overwriting
    assert main(["sweep", str(good), "--out", str(out), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after
    # qesim validate recognises space files
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad)]) == 2


def test_sweep_cli_output_columns(tmp_path):
    from qesim.cli import main
    from qesim.dse.runner import read_sweep

    out = tmp_path / "o"
    assert main(["sweep", str(_write(tmp_path, GOOD)), "--out", str(out), "--quiet", "--chunk-size", "5"]) == 0
    df = read_sweep(out)
    assert len(df) == 36 and df.point_id.is_unique
    for c in ["hbm.bandwidth_gbps", "mpe.mm.0.macs_per_cycle", "buffers.weight_bytes", "model", "setting", "method",
              "stage", "seq_len"] + OUTPUT_COLUMNS:
        assert c in df.columns
    assert len(list((out / "parts").glob("*.parquet"))) == 8
    fp16 = df[df.setting == "W16A16"]
    np.testing.assert_allclose(fp16.speedup, 1.0)
    assert (df[df.setting == "W4A8"].speedup > 1).all()
    assert (out / "pareto.csv").exists()


# ----------------------------------------------------------------------------- Pareto
def test_pareto_hand_checked():
    # (latency, sram):   A(1,4) B(2,2) C(3,3) D(4,1) E(2,2) F(5,5) G(1,5)
    # C is dominated by B; F by everything; G by A (same latency, more SRAM).
    # B and E tie exactly: neither dominates the other, both stay.
    df = pd.DataFrame({"name": list("ABCDEFG"), "latency": [1, 2, 3, 4, 2, 5, 1], "sram": [4, 2, 3, 1, 2, 5, 5]})
    front = pareto_front(df, {"latency": "min", "sram": "min"})
    assert list(front.name) == ["A", "B", "D", "E"]
    # maximising throughput instead of minimising latency flips the picture
    df["tps"] = 1.0 / df.latency
    front2 = pareto_front(df, {"tps": "max", "sram": "min"})
    assert list(front2.name) == ["A", "B", "D", "E"]
    # three objectives: C becomes optimal when it has the smallest MPE
    df["mpe"] = [4, 4, 1, 4, 4, 4, 4]
    front3 = pareto_front(df, {"latency": "min", "sram": "min", "mpe": "min"})
    assert list(front3.name) == ["A", "B", "C", "D", "E"]
    # per-group fronts
    df["grp"] = ["x", "x", "x", "y", "y", "y", "y"]
    front4 = pareto_front(df, {"latency": "min", "sram": "min"}, by=["grp"])
    assert list(front4.name) == ["A", "B", "D", "E", "G"]


def test_pareto_mask_against_brute_force():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, size=(300, 3)).astype(float)
    brute = np.array([not any(np.all(v[j] <= v[i]) and np.any(v[j] < v[i]) for j in range(len(v)))
                      for i in range(len(v))])
    assert (pareto_mask(v) == brute).all()


def test_pareto_on_sweep_prefers_less_sram_at_equal_latency():
    sp = space_from_dict({"space": {"base": "flightllm-u280",
                                    "hw": {"buffers.weight_bytes": [1 << 20, 1 << 21, 1 << 23],
                                           "scale.macs": [0.5, 1.0, 2.0]},
                                    "workload": {"model": "qwen2vl-2b", "stage": "decode", "context_len": 64}}},
                         "t")
    df = evaluate_space(sp)
    front = pareto_front(df, {"latency_s": "min", "sram_bytes": "min", "mpe_macs_per_cycle": "min"})
    assert 0 < len(front) < len(df)
    for r in df.itertuples():  # every row off the front is dominated by a front row
        if r.point_id in set(front.point_id):
            continue
        dom = front[(front.latency_s <= r.latency_s) & (front.sram_bytes <= r.sram_bytes)
                    & (front.mpe_macs_per_cycle <= r.mpe_macs_per_cycle)]
        assert len(dom) > 0


@pytest.mark.parametrize("model", ["qwen3-vl-30b-a3b", "kimi-vl-a3b"])
def test_moe_models_sweep_and_equal_exact(model):
    """Every op kind sweeps: MoE models run through the sweep path and equal --exact to 1e-9."""
    sp = space_from_dict({"space": {
        "base": "flightllm-u280", "sampling": "random", "samples": 3, "seed": 1,
        "hw": {"hbm.bandwidth_gbps": {"min": 100, "max": 2000, "scale": "log"},
               "scale.macs": {"min": 0.5, "max": 4, "scale": "log"},
               "buffers.weight_bytes": [262144, 4194304]},
        "workload": {"model": model, "setting": ["W16A16", "W4A8"]},
        "scenarios": [{"stage": "prefill", "seq_len": 64}, {"stage": "decode", "context_len": 256}],
    }}, "test")
    fast = evaluate_space(sp)
    assert len(fast) == 3 * 2 * 2 and np.isfinite(fast.cycles).all()
    _compare(fast, evaluate_space(sp, exact=True))


def test_devices_and_parallel_sweep_axes_equal_the_multi_device_estimate():
    """devices / parallel as workload axes: the vectorised rows equal --exact and the CLI's
    multi-device estimate (qesim.perf.multidevice.estimate_parallel) point by point."""
    from qesim.graph.builders import build_graph
    from qesim.graph.parallel import parse_parallel
    from qesim.perf.multidevice import estimate_parallel

    sp = space_from_dict({"space": {
        "base": "flightllm-u280", "sampling": "random", "samples": 3, "seed": 5,
        "hw": {"hbm.bandwidth_gbps": {"min": 100, "max": 2000, "scale": "log"},
               "interconnect.link_bandwidth_gbps": [5.0, 50.0]},
        "workload": {"model": "qwen2vl-2b", "setting": ["W16A16", "W4A8"], "method": "none",
                     "devices": [1, 2, 4], "parallel": ["tp", "pp", "tp*pp"]},
        "scenarios": [{"stage": "prefill", "seq_len": 32}, {"stage": "decode", "context_len": 128, "batch": 2}],
    }}, "test")
    fast = evaluate_space(sp)
    exact = evaluate_space(sp, exact=True)
    _compare(fast, exact)
    # devices 1: one row ("tp"); tp*pp on 2 or 4 devices is all tensor parallel (tp = the largest power of 2 <= 8)
    assert set(fast["parallel"]) == {"tp", "tp2", "pp2", "tp4", "pp4"}
    for _, r in fast[fast["devices"] > 1].sample(8, random_state=0).iterrows():
        hw = Evaluator(sp).point_hw(r.to_dict())
        kw = dict(stage=r["stage"], seq_len=int(r["seq_len"]), context_len=int(r["context_len"]), batch=int(r["batch"]),
                  setting=r["setting"], method=r["method"])
        g = build_graph("qwen2vl-2b", **kw)
        mg = (lambda b, kw=kw: build_graph("qwen2vl-2b", **{**kw, "batch": b})) if kw["batch"] > 1 else None
        ref = estimate_parallel(g, hw, parse_parallel(r["parallel"], int(r["devices"])), micro_graph=mg)
        assert r["latency_s"] == pytest.approx(ref["latency_s"], rel=1e-9)
        assert r["energy_per_token_j"] == pytest.approx(ref["energy_per_token_j"], rel=1e-9)
        assert bool(r["fits"]) == ref["fits"]


@pytest.mark.parametrize("workload, match", [
    ({"devices": 0}, "space.workload.devices: must be an integer >= 1"),
    ({"devices": 2, "parallel": "tp2*pp2"}, "space.workload.parallel"),
    ({"devices": 2, "parallel": ""}, "space.workload.parallel"),
    ({"devices": 5, "parallel": "tp"}, "not divisible by 5"),   # qwen2vl-2b heads / widths
])
def test_devices_axis_bad_values_are_refused_before_the_sweep(workload, match):
    from qesim.dse.runner import check_space

    with pytest.raises(InputError, match=match):
        sp = space_from_dict({"space": {"base": "flightllm-u280", "workload": {"model": "qwen2vl-2b", **workload}}},
                             "test")
        check_space(sp)


def test_structure_of_derived_configs():
    """with_updates of point fields only shares the parent's structural key (no re-lowering, no
    model_dump per what-if point); a structural update or a model_copy(update=...) does not."""
    from qesim.hw.loader import load_hw
    from qesim.perf.estimate import _struct_key
    from qesim.perf.points import structural_key

    hw = load_hw("nvidia-a100")
    d = hw.with_updates({"hbm.bandwidth_gbps": 1000.0, "buffers.weight_bytes": 1 << 20})
    assert _struct_key(d) == _struct_key(hw) == structural_key(d)
    s = d.with_updates({"policy.double_buffering": False})
    assert _struct_key(s) == structural_key(s) != _struct_key(hw)
    c = d.model_copy(update={"policy": s.policy})
    assert c._derived_from is None and _struct_key(c) == structural_key(s)


def test_devices_axis_on_hardware_without_interconnect_names_the_space_field():
    from qesim.dse.runner import check_space

    sp = space_from_dict({"space": {"base": "flightllm-vhk158", "workload": {"model": "qwen2vl-2b", "devices": 2}}},
                         "s.yaml")
    with pytest.raises(InputError, match=r"s.yaml: space.workload devices=2 parallel=tp2: .*no interconnect"):
        check_space(sp)


def test_derived_configs_hold_one_ancestor():
    from qesim.hw.loader import load_hw
    from qesim.perf.estimate import _struct_key
    from qesim.perf.points import structural_key

    hw = load_hw("nvidia-a100")
    cur = hw
    for i in range(50):
        cur = cur.with_updates({"hbm.bandwidth_gbps": 1000.0 + i})
    assert cur._derived_from[0] is hw and cur._derived_from[1] == ("hbm.bandwidth_gbps",)
    assert _struct_key(cur) == structural_key(hw)
    s = cur.with_updates({"policy.double_buffering": False}).with_updates({"frequency_mhz": 900.0})
    assert _struct_key(s) == structural_key(s) != structural_key(hw)
