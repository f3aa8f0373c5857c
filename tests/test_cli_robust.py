"""Issue 12's examples at the CLI, in process: each gives exit 2 and ONE stderr line naming the
field or argument (or a correct, finite answer), quickly; no traceback; output paths are
checked before any work and the paths written are printed (also under --quiet)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from qesim.cli import main
from qesim.hw.loader import config_dir


def run(argv, capsys):
    t = time.perf_counter()
    rc = main([str(a) for a in argv])
    dt = time.perf_counter() - t
    out, err = capsys.readouterr()
    return rc, out, err, dt


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    hw = yaml.safe_load((config_dir() / "flightllm-u280.yaml").read_text())
    (d / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    (d / "bin.json").write_bytes(bytes(range(256)) * 4)
    (d / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (d / "plain.txt").write_text("x")
    (d / "acc.csv").write_text("a,b\n1,2\n")
    for name, path, v in (("bw_true", ("hbm", "bandwidth_gbps"), True), ("bw_str", ("hbm", "bandwidth_gbps"), "460"),
                          ("bw_tiny", ("hbm", "bandwidth_gbps"), 1e-300), ("exp_inf", ("sfu", "exp_cycles"), float("inf")),
                          ("typo", ("policy", "sfu_fusoin"), True)):
        h = yaml.safe_load(yaml.safe_dump(hw))
        h[path[0]][path[1]] = v
        (d / f"{name}.yaml").write_text(yaml.safe_dump(h))
    moe = {"name": "m", "model": "m", "stage": "prefill", "seq_len": 8, "context_len": 0,
           "ops": [{"kind": "moe", "name": "moe", "tokens": 8, "hidden": 64, "expert_intermediate": 32, "experts": 4,
                    "top_k": 2, "expert_freqs": [float("nan"), 0.5, 0.25, 0.25]}]}
    (d / "moe_nan.json").write_text(json.dumps(moe))
    base = {"space": {"base": "flightllm-u280", "hw": {"hbm.bandwidth_gbps": [230, 460]},
                      "workload": {"model": "llama2-7b"}}}
    for name, f in (("chunk0", lambda s: s["space"].update(chunk_size=0)),
                    ("samples", lambda s: s["space"].update(samples=-5)),
                    ("both", lambda s: s.update(sweep={"base": "flightllm-u280"})),
                    ("name", lambda s: s["space"].update(name={"a": 1})),
                    ("huge", lambda s: s["space"].update(hw={f"sfu.{k}": {"min": 1, "max": 2, "num": 100} for k in
                                                             ("exp_cycles", "reciprocal_cycles", "rsqrt_cycles",
                                                              "reduce_cycles", "elementwise_cycles")}))):
        s = json.loads(json.dumps(base))
        f(s)
        (d / f"s_{name}.yaml").write_text(yaml.safe_dump(s))
    return d


E = ["estimate", "--model", "llama2-7b", "--hw", "flightllm-u280"]

CASES = [
    (["validate", "{d}/bin.yaml"], "not a text file"),
    (["estimate", "--model", "llama2-7b", "--hw", "{d}/bin.yaml"], "not a text file"),
    (["estimate", "--model", "{d}/bin.json"], "not a text file"),
    (["validate", "{d}/deep.json"], "nested deeper"),
    (["estimate", "--model", "{d}/deep.json"], "nested deeper"),
    (["validate", "{d}/moe_nan.json"], "NaN is not a JSON number"),
    (["estimate", "--model", "{d}/moe_nan.json"], "NaN is not a JSON number"),
    (["validate", "{d}/bw_true.yaml"], "field hbm.bandwidth_gbps"),
    (["validate", "{d}/bw_str.yaml"], "field hbm.bandwidth_gbps"),
    (E[:3] + ["--hw", "{d}/bw_tiny.yaml"], "field hbm.bandwidth_gbps"),
    (E[:3] + ["--hw", "{d}/exp_inf.yaml"], "field sfu.exp_cycles"),
    (["validate", "{d}/typo.yaml"], "did you mean sfu_fusion?"),
    (["moe", "touched", "--top-k", "9", "--experts", "8"], "--top-k"),
    (["moe", "touched", "--tokens", "-1"], "--tokens"),
    (["moe", "touched", "--trials", "0"], "--trials"),
    (["moe", "touched", "--trials", "100000000"], "exceeds the limit"),
    (["accuracy", "--speed-from", "{d}/acc.csv", "--out", "{d}/o"], "--speed-from"),
    (["accuracy", "--merge", "{d}/acc.csv", "--out", "{d}/o"], "missing column(s) model, method, setting, metric"),
    (["compare-engines", "--model", "llama2-7b", "--stage", "decode", "--trace", "{d}/plain.txt"], "--trace"),
    (["sweep", "{d}/s_chunk0.yaml", "--out", "{d}/plain.txt"], "--out"),
    (["inference", "--report", "--out", "{d}/plain.txt"], "--out"),
    (["compare-engines", "--all", "--out", "{d}/plain.txt"], "--out"),
    (["reproduce", "table8", "--out", ""], "--out: empty path"),
    (["report", "--out", "{d}/plain.txt"], "--out"),
    (["graph", "build", "--model", "llama2-7b", "--stage", "decode", "--out", "{d}"], "is a directory"),
    (E + ["--seq-len", "1e18"], "exceeds the limit"),
    (E + ["--batch", "1e18"], "exceeds the limit"),
    (E + ["--batch", "10000000"], "exceeds the limit"),
    (E + ["--batch", "2.5"], "argument --batch"),
    (E + ["--setting", ""], "setting"),
    (E + ["--method", ""], "method"),
    (["inference", "--model", "llama2-7b", "--request", "128,100000000", "--json"], "KV-cache limit"),
    (["validate", "{d}/s_chunk0.yaml"], "space.chunk_size"),
    (["validate", "{d}/s_samples.yaml"], "space.samples"),
    (["validate", "{d}/s_both.yaml"], "'sweep:'"),
    (["validate", "{d}/s_name.yaml"], "space.name"),
    (["validate", "{d}/s_huge.yaml"], "above the limit"),
]


@pytest.mark.parametrize("argv,needle", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_one_line_exit_2(files, capsys, argv, needle):
    rc, out, err, dt = run([a.format(d=files) for a in argv], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (out, err)
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert dt < 5.0


def test_density_tiny_is_finite(capsys):
    rc, out, err, _ = run(E + ["--density", "1e-300", "--json"], capsys)
    assert rc == 0, err
    d = json.loads(out, parse_constant=lambda c: pytest.fail(c))
    assert d["latency_s"] > 0


def test_w16a16_has_speedup_one_and_method_none(capsys):
    rc, out, err, _ = run(E + ["--setting", "W16A16", "--method", "qe", "--json"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert d["speedup_vs_fp16"] == 1.0 and d["method"] == "none"


def test_paths_printed_under_quiet(tmp_path, capsys):
    rc, out, err, _ = run(["reproduce", "table8", "--out", tmp_path / "t8", "--quiet"], capsys)
    assert rc == 0 and out == ""
    assert f"wrote {tmp_path / 't8' / 'table8.md'}" in err


def test_trace_paths_printed(tmp_path, capsys):
    rc, out, err, _ = run(["compare-engines", "--model", "llama2-7b", "--stage", "decode", "--context", "16",
                           "--trace", tmp_path / "tr", "--json"], capsys)
    assert rc == 0, err
    json.loads(out)
    assert "wrote " in err and "trace_" in err and (tmp_path / "tr").is_dir()
