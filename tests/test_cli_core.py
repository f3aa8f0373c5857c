"""End-to-end runs of the core CLI commands (in-process and as a subprocess)."""

import csv
import json
import subprocess
import sys

import pytest

from qesim.cli import main


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("hw", ["qe-paper-npu", "flightllm-u280", "flightllm-vhk158", "nvidia-a100"])
def test_estimate_json_contract(hw, capsys):
    rc, out, _ = run(["estimate", "--model", "qwen2vl-7b", "--hw", hw, "--setting", "W4A8", "--method", "qe",
                      "--stage", "prefill", "--seq-len", "128", "--json"], capsys)
    assert rc == 0
    d = json.loads(out)
    for k in ("latency_s", "cycles", "tokens_per_s", "bound", "ops"):
        assert k in d
    assert d["latency_s"] > 0 and d["cycles"] > 0
    assert all({"name", "kind", "cycles", "bytes", "bound"} <= set(o) for o in d["ops"])
    assert d["tokens_per_s"] == pytest.approx(128 / d["latency_s"])
    assert d["speedup_vs_fp16"] == pytest.approx(d["fp16_latency_s"] / d["latency_s"])
    assert d["speedup_vs_fp16"] > 1.0
    # SFU ops fused into their MPE op are listed, and have no row of their own
    names = {o["name"] for o in d["ops"]}
    assert not names & set(d["fused_into"]) and set(d["fused_into"].values()) <= names
    assert bool(d["fused_into"]) == (hw != "nvidia-a100")  # sfu_fusion: on except for the A100


def test_estimate_table_and_decode(capsys):
    rc, out, _ = run(["estimate", "--model", "llama2-7b", "--hw", "flightllm-u280", "--stage", "decode",
                      "--context", "512"], capsys)
    assert rc == 0 and "tokens/s" in out and "layer.q_proj" in out and "bound: hbm" in out
    assert "fused SFU ops" in out and "layer.down_proj <- layer.mlp_residual" in out


def test_estimate_graph_file(tmp_path, capsys):
    from qesim.graph.builders import build_graph

    p = tmp_path / "g.json"
    build_graph("qwen2vl-2b", stage="decode", context_len=100, setting="W4A8", method="qe").to_json(p)
    rc, out, _ = run(["estimate", "--model", str(p), "--hw", "qe-paper-npu", "--json"], capsys)
    assert rc == 0 and json.loads(out)["stage"] == "decode"
    rc, _, err = run(["estimate", "--model", str(p), "--hw", "qe-paper-npu", "--setting", "W4A8"], capsys)
    assert rc == 2 and "cannot be combined" in err


def test_bad_inputs_exit_2(tmp_path, capsys):
    rc, _, err = run(["estimate", "--model", "no-such-model", "--hw", "qe-paper-npu", "--stage", "decode"], capsys)
    assert rc == 2 and "llama2-7b" in err and "Traceback" not in err
    rc, _, err = run(["estimate", "--model", "llama2-7b", "--hw", "no-such-hw"], capsys)
    assert rc == 2 and "flightllm-u280" in err
    rc, _, err = run(["estimate", "--model", "llama2-7b", "--setting", "INT4"], capsys)
    assert rc == 2 and "W<bits>A<bits>" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("mpe: [unclosed\n")
    rc, _, err = run(["validate", str(bad)], capsys)
    assert rc == 2 and "bad.yaml" in err and "malformed YAML" in err
    bad.write_text("name: x\nfrequency_mhz: 100\nmpe: {mm: [], mv: []}\n")
    rc, _, err = run(["validate", str(bad)], capsys)
    assert rc == 2 and "mpe.mm" in err
    rc, _, err = run(["estimate", "--model", "llama2-7b", "--hw", str(bad)], capsys)
    assert rc == 2 and "bad.yaml" in err


def test_validate_presets(capsys):
    from qesim.hw.loader import config_dir

    files = sorted(str(p) for p in config_dir().glob("*.yaml"))
    rc, out, _ = run(["validate", *files], capsys)
    assert rc == 0 and out.count("valid hardware config") == len(files) >= 4


def test_hw_configs_numbers_are_sourced():
    """Every number in hw_configs/*.yaml carries a comment (source or 'assumption')."""
    import re

    from qesim.hw.loader import config_dir

    for p in config_dir().glob("*.yaml"):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r":\s*-?\d", code) and "#" not in line:
                pytest.fail(f"{p.name}:{i}: number without a source comment: {line.strip()}")


def test_reproduce_table8_subprocess(tmp_path):
    out = tmp_path / "r"
    res = subprocess.run([sys.executable, "-m", "qesim.cli", "reproduce", "table8", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out / "table8.csv")))
    assert len(rows) == 9
    assert set(rows[0]) == {"in_features", "out_features", "setting", "stage", "seq_len", "paper_speedup",
                            "qesim_speedup", "error_pct"}
    assert all(abs(float(r["error_pct"])) <= 2 for r in rows)
    md = (out / "table8.md").read_text()
    assert "Sensitivity" in md and "flightllm-u280" in md and "Decode" in md
    assert "| 3584 | 3584 | W4A8 |" in res.stdout
