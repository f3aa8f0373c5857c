"""Layer-graph input handling: strict types, documented maxima, cross-op checks, unreadable files
(issue 12). What validates must run: every graph accepted here is estimated to a finite result."""

from __future__ import annotations

import copy
import json
import math
import time

import pytest

from qesim.errors import InputError
from qesim.graph.builders import build_graph
from qesim.graph.ir import MAX_FEATURES, MAX_TOKENS, LayerGraph
from qesim.hw.loader import load_hw


@pytest.fixture(scope="module")
def g() -> dict:
    return json.loads(build_graph("llama2-7b", stage="decode", context_len=512).to_json())


def _lin(d: dict) -> dict:
    return next(o for o in d["ops"] if o["kind"] == "linear")


def _load(tmp_path, d) -> LayerGraph:
    p = tmp_path / "g.json"
    p.write_text(json.dumps(d) if not isinstance(d, (bytes, str)) else d)
    return LayerGraph.from_json(p)


def _err(tmp_path, d) -> str:
    with pytest.raises(InputError) as ei:
        _load(tmp_path, d)
    msg = str(ei.value)
    assert "\n" not in msg and "g.json" in msg
    return msg


@pytest.mark.parametrize("field,value,needle", [
    ("tokens", True, "tokens: Input should be a valid integer (got True)"),
    ("in_features", "4096", "in_features: Input should be a valid integer (got '4096')"),
    ("in_features", 10**15, f"less than or equal to {MAX_FEATURES}"),
    ("tokens", MAX_TOKENS + 1, f"less than or equal to {MAX_TOKENS}"),
    ("weight_density", 0.0, "weight_density"),
    ("repeat", 2.5, "repeat"),
    ("weight_shared_with", "nope", "weight_shared_with names 'nope', which is not an op"),
])
def test_bad_linear_field(tmp_path, g, field, value, needle):
    d = copy.deepcopy(g)
    _lin(d)[field] = value
    assert needle in _err(tmp_path, d)


def test_weight_sharing_checked(tmp_path, g):
    d = copy.deepcopy(g)
    _lin(d)["weight_shared_with"] = _lin(d)["name"]
    assert "names the op itself" in _err(tmp_path, d)
    d = copy.deepcopy(g)
    _lin(d)["weight_shared_with"] = "embedding"  # 4096 x 4096 q_proj vs the 32000 x 4096 table
    assert "table, not the op's" in _err(tmp_path, d)
    d = copy.deepcopy(g)
    _lin(d)["weight_shared_with"] = "layer.attention"
    assert "attention op, which has no weight" in _err(tmp_path, d)
    tied = json.loads(build_graph("qwen2vl-2b", stage="prefill", seq_len=8).to_json())
    assert any(o.get("weight_shared_with") == "embedding" for o in tied["ops"])
    _load(tmp_path, tied)  # the builder's own tied lm_head passes


def test_decode_graph_has_one_token(tmp_path, g):
    d = copy.deepcopy(g)
    d["seq_len"] = 100000
    assert "1 x 100000 = 100000 tokens per pass, but the largest op processes 1 rows" in _err(tmp_path, d)


def test_nonfinite_numbers_refused(tmp_path):
    moe = {"name": "m", "model": "m", "stage": "prefill", "seq_len": 8, "context_len": 0,
           "ops": [{"kind": "moe", "name": "moe", "tokens": 8, "hidden": 64, "expert_intermediate": 32,
                    "experts": 4, "top_k": 2, "expert_freqs": [0.25, 0.25, 0.25, 0.25]}]}
    _load(tmp_path, moe)
    bad = copy.deepcopy(moe)
    bad["ops"][0]["expert_freqs"][0] = float("nan")
    assert "NaN is not a JSON number" in _err(tmp_path, bad)  # json.dumps writes NaN
    with pytest.raises(Exception) as ei:  # and from Python: pydantic refuses it
        LayerGraph.model_validate(bad)
    assert "finite" in str(ei.value)


def test_unreadable_graph_files(tmp_path, unreadable):
    for content, needle in (unreadable, (b"{\"a\": ", "not valid JSON (line 1")):
        p = tmp_path / "g.json"
        p.write_bytes(content)
        with pytest.raises(InputError) as ei:
            LayerGraph.from_json(p)
        assert needle in str(ei.value) and str(p) in str(ei.value)


def test_utf16_graph_is_read(tmp_path, g):
    p = tmp_path / "g.json"
    p.write_bytes(json.dumps(g).encode("utf-16"))
    assert LayerGraph.from_json(p).name == g["name"]


def test_numpy_scalars_accepted():
    import numpy as np

    from qesim.graph.ir import LinearOp

    op = LinearOp(name="x", in_features=np.int64(64), out_features=np.int32(32), tokens=np.int64(4),
                  weight_density=np.float32(0.5))
    assert type(op.in_features) is int and op.in_features == 64


@pytest.mark.parametrize("kw,needle", [
    (dict(seq_len=10**18), "tokens per pass exceeds the limit"),
    (dict(batch=10**18), "exceeds the limit"),
    (dict(batch=10**5), "tokens per pass exceeds the limit"),
    (dict(context_len=10**12), "KV-cache limit"),
    (dict(seq_len=True), "seq_len must be an integer"),
])
def test_builder_limits_refused_fast(kw, needle):
    t = time.perf_counter()
    with pytest.raises(InputError) as ei:
        build_graph("llama2-7b", stage="prefill", **kw)
    assert needle in str(ei.value)
    assert time.perf_counter() - t < 1.0


def test_at_the_limits_answers_quickly():
    """The largest accepted pass is costed well under the time budget and finitely."""
    from qesim.perf.model import estimate_graph

    hw = load_hw("flightllm-u280")
    for kw in (dict(stage="prefill", seq_len=MAX_TOKENS), dict(stage="decode", context_len=2**24 - 1)):
        g = build_graph("llama2-7b", **kw)
        t = time.perf_counter()
        est = estimate_graph(g, hw)
        assert time.perf_counter() - t < 5.0
        assert math.isfinite(est.latency_s) and est.latency_s > 0
