"""Property-based fuzzing of every user-input boundary (issue 12): hardware YAMLs, layer graphs,
sweep spaces and CLI argument lists, valid and mutated.

Each generated input is run through the CLI in process (``qesim.cli.main``). The property: exit 0
with finite JSON (strict: no NaN/Infinity), or exit 2 with exactly one stderr line (naming the file
and field, or the argument) -- never another exception, never more than a few seconds.

Sizes are chosen to keep the default suite fast (about 150 inputs in total, see ``MAX``);
``QESIM_FUZZ_EXAMPLES=N`` raises the number of examples per property for a longer hunt.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qesim.cli import main
from qesim.hw.loader import config_dir

MAX = int(os.environ.get("QESIM_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(max_examples=MAX or 40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TIME_LIMIT_S = 8.0  # per input, generous for a loaded CI machine (typical: well under 1 s)

#: how many inputs each property tried (printed by the last test)
TRIED: dict[str, int] = {}

NASTY = st.one_of(
    st.booleans(), st.none(), st.just(""), st.just("460"), st.just("4 MiB"), st.just("2039 GB/s"),
    st.just("1.41 GHz"), st.just("12 parsecs"), st.just([]), st.just({}), st.just({"a": 1}), st.just([-4, 99]),
    st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([0, 1, -1, 2**31, 10**15, 10**18]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e-300, 1e300, 0.5, 2.5, -0.0]),
    st.text(max_size=8))


def _check(argv, capsys, what: str) -> tuple[int, str]:
    TRIED[what] = TRIED.get(what, 0) + 1
    t = time.perf_counter()
    rc = main([str(a) for a in argv])
    dt = time.perf_counter() - t
    out, err = capsys.readouterr()
    assert dt < TIME_LIMIT_S, f"{argv} took {dt:.1f} s"
    assert rc in (0, 2), (argv, rc, err)
    TRIED[f"{what} exit {rc}"] = TRIED.get(f"{what} exit {rc}", 0) + 1
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("wrote ", "note: "))]
    if rc == 2:
        assert len(lines) == 1 and "error" in lines[0], (argv, err)
    elif "--json" in argv:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"{argv}: non-finite {c} in JSON"))
    return rc, (lines[0] if lines else "")


def _leaves(d, prefix=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _leaves(v, prefix + (i,))
    else:
        yield prefix


def _set(d, path, v):
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = v


# ----------------------------------------------------------------------------- hardware YAMLs
HW = yaml.safe_load((config_dir() / "flightllm-u280.yaml").read_text())
HW_LEAVES = [p for p in _leaves(HW) if p[0] not in ("description", "sources")]


@FUZZ
@given(muts=st.lists(st.tuples(st.sampled_from(HW_LEAVES), NASTY), min_size=0, max_size=3),
       extra=st.sampled_from([None, ("policy", "sfu_fusoin"), ("frequency_ghz",), ("hbm", "bw")]),
       stage=st.sampled_from(["prefill", "decode"]))
def test_fuzz_hw_yaml(tmp_path, capsys, muts, extra, stage):
    d = copy.deepcopy(HW)
    for path, v in muts:
        _set(d, path, v)
    if extra:
        _set(d, extra, 1)
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(d))
    rc, line = _check(["estimate", "--model", "smollm2-135m", "--hw", p, "--stage", stage, "--json"], capsys, "hw")
    if rc == 2:
        assert str(p) in line
    rc2, _ = _check(["validate", p], capsys, "hw")
    assert (rc2 == 0) == (rc == 0), "validate and estimate disagree"


# ----------------------------------------------------------------------------- layer graphs
def _graph(stage: str) -> dict:
    from qesim.graph.builders import build_graph

    return json.loads(build_graph("smollm2-135m", stage=stage, seq_len=16, context_len=32, setting="W4A8",
                                  method="qe").to_json())


GRAPHS = {s: _graph(s) for s in ("prefill", "decode")}


@FUZZ
@given(stage=st.sampled_from(["prefill", "decode"]), data=st.data(),
       n=st.integers(min_value=0, max_value=3))
def test_fuzz_graph_json(tmp_path, capsys, stage, data, n):
    d = copy.deepcopy(GRAPHS[stage])
    leaves = [p for p in _leaves(d) if p[-1] not in ("name",)]
    for _ in range(n):
        path = data.draw(st.sampled_from(leaves))
        _set(d, path, data.draw(NASTY))
    p = tmp_path / "g.json"
    p.write_text(json.dumps(d))  # NaN/Infinity written as JSON's non-standard literals: refused
    rc, line = _check(["estimate", "--model", p, "--hw", "flightllm-u280", "--json"], capsys, "graph")
    if rc == 2:
        assert str(p) in line
    rc2, _ = _check(["validate", p], capsys, "graph")
    assert (rc2 == 0) == (rc == 0), "validate and estimate disagree"


# ----------------------------------------------------------------------------- sweep spaces
AXES = {"hbm.bandwidth_gbps": st.lists(st.sampled_from([230, 460, 0, -1, True, "x", 1e-300]), min_size=0, max_size=3),
        "buffers.weight_bytes": st.one_of(st.just({"min": 2**20, "max": 2**22, "num": 3}),
                                          st.just({"min": 2**20, "max": 2**22, "step": 0}),
                                          st.just({"min": 5, "max": 1}), st.just({"min": 1, "max": 2**40, "num": 10**6})),
        "policy.sfu_fusion": st.just([True, False]), "mpe.mm.0.macs_per_cycle": st.just([8192, 16384]),
        "hbm.bandwith_gbps": st.just([1])}
WORKLOAD = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["smollm2-135m", "nope", 3]), "setting": st.sampled_from(["W4A8", "", "W99A1"]),
    "stage": st.sampled_from(["prefill", "decode", "x"]), "seq_len": st.sampled_from([16, 0, True, 10**18]),
    "batch": st.sampled_from([1, -1, 2.5]), "density": st.sampled_from([1.0, 0.5, 0, 2])})


@FUZZ
@given(axes=st.dictionaries(st.sampled_from(sorted(AXES)), st.none(), max_size=3), data=st.data(),
       workload=WORKLOAD,
       top=st.fixed_dictionaries({}, optional={"sampling": st.sampled_from(["grid", "random", "sobol"]),
                                               "samples": st.sampled_from([3, -5, 0, 10**12]),
                                               "chunk_size": st.sampled_from([0, 64, -1]),
                                               "name": st.sampled_from(["s", {"a": 1}])}))
def test_fuzz_sweep_space(tmp_path, capsys, axes, data, workload, top):
    hw = {k: data.draw(AXES[k]) for k in axes}
    space = {"space": {"base": "flightllm-u280", "hw": hw, "workload": {"model": "smollm2-135m", "seq_len": 16,
                                                                         **workload}, **top}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(space))
    _check(["validate", p], capsys, "space")


# ----------------------------------------------------------------------------- CLI argument lists
FLAGS = {
    "estimate": ["--model", "--hw", "--setting", "--method", "--stage", "--seq-len", "--context", "--batch",
                 "--density", "--kv-bits", "--engine", "--json"],
    "inference": ["--model", "--hw", "--setting", "--method", "--request", "--batch", "--density", "--sample-every",
                  "--json"],
    "moe touched": ["--experts", "--top-k", "--tokens", "--trials"],
    "graph build": ["--model", "--stage", "--seq-len", "--context", "--batch", "--setting", "--method", "--density"],
    "hw show": [],
}
VALUES = st.sampled_from(["smollm2-135m", "llama2-7b", "flightllm-u280", "qe-paper-npu", "W4A8", "W16A16", "", "qe",
                          "none", "prefill", "decode", "0", "1", "-1", "16", "1e18", "1e-300", "nan", "inf", "2.5",
                          "128,512", "128,100000000", "x", "cycle", "analytical", "9", "100000"])


@FUZZ
@given(cmd=st.sampled_from(sorted(FLAGS)), data=st.data())
def test_fuzz_cli_arguments(capsys, cmd, data):
    argv = cmd.split()
    if cmd in ("estimate", "inference"):
        argv += ["--model", data.draw(st.sampled_from(["smollm2-135m", "llama2-7b", "nope"]))]
    if cmd == "hw show":
        argv += [data.draw(VALUES), "--json"]
    if cmd == "graph build":
        argv += ["--model", "smollm2-135m", "--stage", data.draw(st.sampled_from(["prefill", "decode"]))]
    for flag in data.draw(st.lists(st.sampled_from(FLAGS[cmd] or ["--json"]), max_size=4, unique=True)):
        argv.append(flag)
        if flag != "--json":
            argv.append(data.draw(VALUES))
    if cmd == "estimate" and "--engine" in argv and "cycle" in argv:
        argv = [a if a != "cycle" else "analytical" for a in argv]  # the cycle engine is tested elsewhere
    if cmd == "inference" and "cycle" in argv:
        argv = [a if a != "cycle" else "analytical" for a in argv]
    _check(argv, capsys, "cli")


def test_fuzz_counts():
    """Every property ran (the counts go into the issue note)."""
    kinds = ("hw", "graph", "space", "cli")
    if not all(k in TRIED for k in kinds):
        pytest.skip("runs after the four fuzz properties of this file")
    assert all(TRIED.get(k, 0) > 0 for k in kinds), TRIED
    # both outcomes occur: the mutations reach the validators, and valid inputs still run
    assert all(TRIED.get(f"{k} exit 2", 0) > 0 for k in kinds), TRIED
    assert TRIED.get("hw exit 0", 0) > 0 and TRIED.get("graph exit 0", 0) > 0, TRIED
    print(f"fuzz inputs tried: {TRIED} (total {sum(TRIED[k] for k in kinds)})")
