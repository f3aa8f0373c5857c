"""Workload inputs of issue 16: --density per linear, --group-size."""

import json
import subprocess
import sys

import pytest

from qesim.errors import InputError
from qesim.graph.builders import build_graph
from qesim.graph.settings import parse_density, parse_setting


def _lin(g):
    return {o.name: o for o in g.ops if o.kind == "linear"}


def test_parse_density_forms():
    assert parse_density("0.5") == 0.5 and parse_density(0.7) == 0.7 and parse_density(1) == 1.0
    assert parse_density("q_proj=0.7, k_proj=0.7") == {"q_proj": 0.7, "k_proj": 0.7}
    assert parse_density({"layer.q_proj": 0.5}) == {"layer.q_proj": 0.5}
    for bad in ("0", "1.5", "abc", "q_proj=2", "q_proj=x", "=0.5", "q_proj=0.5,q_proj=0.6", True):
        with pytest.raises(InputError):
            parse_density(bad)


def test_density_per_linear_only_sparsifies_named():
    g = build_graph("llama2-7b", stage="prefill", setting="W8A8", density="q_proj=0.7,layer.k_proj=0.7")
    lin = _lin(g)
    assert lin["layer.q_proj"].weight_density == 0.7 and lin["layer.k_proj"].weight_density == 0.7
    for n in ("layer.v_proj", "layer.o_proj", "layer.gate_proj", "layer.up_proj", "layer.down_proj", "lm_head"):
        assert lin[n].weight_density == 1.0
    assert g.meta["density"] == "q_proj=0.7,layer.k_proj=0.7"


def test_plain_density_keeps_meaning():
    a = build_graph("llama2-7b", stage="decode", density=0.5)
    b = build_graph("llama2-7b", stage="decode", density="0.5")
    assert a.to_json() == b.to_json()
    lin = _lin(a)
    assert all(o.weight_density == 0.5 for n, o in lin.items() if n != "lm_head") and lin["lm_head"].weight_density == 1.0


def test_density_unknown_name_is_one_clear_error():
    with pytest.raises(InputError, match="unknown linear.*'qq'.*q_proj"):
        build_graph("llama2-7b", stage="prefill", density="qq=0.5")


def test_group_size():
    g = build_graph("llama2-7b", stage="decode", setting="W4A16", group_size=64)
    assert {o.group_size for n, o in _lin(g).items() if n != "lm_head"} == {64}
    assert g.meta["group_size"] == 64
    assert parse_setting("W4A16").group_size == 128 and parse_setting("W4A8").group_size == -1
    assert parse_setting("W4A8", 128).group_size == 128 and parse_setting("W4A16", -1).group_size == -1
    with pytest.raises(InputError):
        parse_setting("W4A16", 0)
    # smaller groups carry more metadata bytes
    from qesim.hw.loader import load_hw
    from qesim.perf.model import estimate_graph

    hw = load_hw("nvidia-a100")
    b64 = estimate_graph(g, hw).bytes_by_memory["hbm"]
    b128 = estimate_graph(build_graph("llama2-7b", stage="decode", setting="W4A16"), hw).bytes_by_memory["hbm"]
    assert b64 > b128


def test_cli_density_and_group_size(tmp_path):
    base = [sys.executable, "-m", "qesim.cli", "estimate", "--model", "llama2-7b", "--hw", "flightllm-vhk158",
            "--setting", "W8A8", "--json"]
    dense = json.loads(subprocess.run(base, capture_output=True, text=True, check=True).stdout)
    sp = json.loads(subprocess.run(base + ["--density", "q_proj=0.7,k_proj=0.7"], capture_output=True, text=True,
                                   check=True).stdout)
    by = {o["name"]: o["bytes"] for o in sp["ops"]}
    byd = {o["name"]: o["bytes"] for o in dense["ops"]}
    assert by["layer.q_proj"] < byd["layer.q_proj"] and by["layer.v_proj"] == byd["layer.v_proj"]
    r = subprocess.run(base + ["--density", "x_proj=0.5"], capture_output=True, text=True)
    assert r.returncode == 2 and "x_proj" in r.stderr and "Traceback" not in r.stderr
    out = tmp_path / "g.json"
    subprocess.run([sys.executable, "-m", "qesim.cli", "graph", "build", "--model", "llama2-7b", "--stage", "decode",
                    "--setting", "W4A16", "--group-size", "32", "--out", str(out)], check=True, capture_output=True)
    g = json.loads(out.read_text())
    assert {o["group_size"] for o in g["ops"] if o["kind"] == "linear" and o["name"] != "lm_head"} == {32}


def test_sweep_workload_group_size():
    from qesim.dse.evaluate import _graph
    from qesim.dse.space import space_from_dict

    sp = space_from_dict({"space": {"base": "nvidia-a100-80gb", "hw": {"hbm.bandwidth_gbps": [1555, 2039]},
                                    "workload": {"model": "llama2-7b", "setting": "W4A16", "stage": "decode",
                                                 "group_size": [32, 128, 0]}}})
    gs = sorted(w["group_size"] for w in sp.workloads)
    assert gs == [0, 32, 128]
    sizes = {w["group_size"]: {o.group_size for o in _graph(w).ops if o.kind == "linear" and o.name != "lm_head"}
             for w in sp.workloads}
    assert sizes == {32: {32}, 128: {128}, 0: {128}}  # 0 = the setting's default (g128 for weight-only)
    with pytest.raises(InputError, match="group_size"):
        space_from_dict({"space": {"base": "nvidia-a100-80gb", "hw": {"hbm.bandwidth_gbps": [1555]},
                                   "workload": {"model": "llama2-7b", "group_size": -5}}})


SWEEP_DENSITY = """\
space:
  name: density-axis
  base: nvidia-a100-80gb
  hw:
    hbm.bandwidth_gbps: [1555, 2039]
  workload:
    model: llama2-7b
    setting: W8A8
    stage: decode
    context_len: 64
    density: [1.0, 0.5, "q_proj=0.5,k_proj=0.5", {q_proj: 0.5, k_proj: 0.5}]
"""


def test_sweep_density_per_linear_axis(tmp_path):
    """A per-linear density is a sweep workload value (string or mapping, the same workload); the
    sweep's latency equals the estimate of the same graph; validate accepts exactly this file."""
    pytest.importorskip("pyarrow")
    from qesim.cli import main
    from qesim.dse.runner import read_sweep
    from qesim.dse.space import load_space
    from qesim.hw.loader import load_hw
    from qesim.perf.estimate import estimate_graph

    f = tmp_path / "space.yaml"
    f.write_text(SWEEP_DENSITY)
    sp = load_space(f)
    assert [w["density"] for w in sp.workloads] == [1.0, 0.5, "q_proj=0.5,k_proj=0.5"]  # mapping = string
    assert main(["validate", str(f)]) == 0
    out = tmp_path / "out"
    assert main(["sweep", str(f), "--out", str(out), "--quiet"]) == 0
    df = read_sweep(out)
    assert sorted(set(df.density)) == ["0.5", "1", "q_proj=0.5,k_proj=0.5"]
    hw = load_hw("nvidia-a100-80gb").with_updates({"hbm.bandwidth_gbps": 2039.0})
    row = df[(df.density == "q_proj=0.5,k_proj=0.5") & (df["hbm.bandwidth_gbps"] == 2039)]
    g = build_graph("llama2-7b", stage="decode", context_len=64, setting="W8A8", density="q_proj=0.5,k_proj=0.5")
    est = estimate_graph(g, hw)
    assert float(row.latency_s.iloc[0]) == pytest.approx(est.latency_s, rel=1e-9)
    dense = df[(df.density == "1") & (df["hbm.bandwidth_gbps"] == 2039)]
    assert float(row.latency_s.iloc[0]) < float(dense.latency_s.iloc[0])  # q/k sparsity saves weight traffic
    bad = tmp_path / "bad.yaml"
    bad.write_text(SWEEP_DENSITY.replace('"q_proj=0.5,k_proj=0.5"', '"q_prj=0.5"'))
    assert main(["validate", str(bad)]) == 2
    assert main(["sweep", str(bad), "--out", str(tmp_path / "bad"), "--quiet"]) == 2
