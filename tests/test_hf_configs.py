"""HF config.json files as models: both reading routes, published parameter counts, sliding
windows, MoE/MLA structure, the CLI and sweep spaces (incl. a worker in another process)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qesim.errors import InputError
from qesim.graph.builders import build_graph
from qesim.graph.hf import SUPPORTED_MODEL_TYPES, load_hf_spec, read_hf_config, spec_from_hf_config
from qesim.graph.presets import get_spec

DATA = Path(__file__).parent / "data" / "hf_configs"
ALL = sorted(p.name for p in DATA.iterdir() if (p / "config.json").exists())

#: published totals (model cards; see tests/data/hf_configs/README.md): (total, active or None)
PUBLISHED = {
    "llama3-8b": (8.03e9, None), "mistral-7b": (7.24e9, None), "qwen2-7b": (7.62e9, None),
    "gemma-2b": (2.51e9, None), "gemma-2-9b": (9.24e9, None), "gemma-3-1b": (1.0e9, None),
    "phi-3-mini-4k": (3.82e9, None), "mixtral-8x7b": (46.7e9, 12.9e9), "qwen1.5-moe-a2.7b": (14.3e9, 2.7e9),
    "deepseek-v2-lite": (15.7e9, None), "deepseek-v3": (671e9, 37e9), "opt-125m": (125.2e6, None),
}


def test_sixteen_configs_cover_the_model_types():
    types = {json.loads((DATA / n / "config.json").read_text())["model_type"] for n in ALL}
    for t in ("llama", "mistral", "qwen2", "qwen2_vl", "qwen2_5_vl", "internvl_chat", "opt", "gemma", "gemma2",
              "gemma3_text", "phi3", "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3"):
        assert t in types
        assert t in SUPPORTED_MODEL_TYPES


@pytest.mark.parametrize("name", ALL)
def test_json_route_and_transformers_route_agree(name):
    raw = json.loads((DATA / name / "config.json").read_text())
    plain = spec_from_hf_config(raw)
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers not installed: only the JSON route exists")
    d, how = read_hf_config(DATA / name)
    via = spec_from_hf_config(d)
    assert via.model_dump(exclude={"sources"}) == plain.model_dump(exclude={"sources"}), how


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_totals(name):
    s = load_hf_spec(DATA / name)
    total, active = PUBLISHED[name]
    assert abs(s.param_count() - total) / total < 0.01
    if active is not None:
        assert abs(s.active_param_count() - active) / active < 0.03


def test_hf_configs_equal_the_presets_they_describe():
    for d, preset in (("internvl2-8b", "internvl2-8b"), ("qwen2-vl-7b", "qwen2vl-7b"), ("qwen2.5-vl-7b", "qwen2vl-7b")):
        a, b = load_hf_spec(DATA / d), get_spec(preset)
        keys = ("hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "vocab", "qkv_bias",
                "tied_embeddings")
        assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}, d
        assert a.param_count() == b.param_count()


def _attn(g):
    return {o.name: o for o in g.ops if o.kind == "attention"}


def test_mistral_sliding_window_caps_the_kv_cache_read():
    m = DATA / "mistral-7b"
    dec = build_graph(str(m), stage="decode", context_len=8000)
    a = _attn(dec)
    assert list(a) == ["layer.attention_swa"] and a["layer.attention_swa"].kv_len == 4096
    assert a["layer.attention_swa"].repeat == 32 and dec.meta["sliding_window"] == 4096
    short = _attn(build_graph(str(m), stage="decode", context_len=1000))  # inside the window: no cap
    assert list(short) == ["layer.attention"] and short["layer.attention"].kv_len == 1001
    pre = _attn(build_graph(str(m), stage="prefill", seq_len=128, context_len=6000))
    assert pre["layer.attention_swa"].kv_len == 128 + 4095
    # the cost follows: the same model without the window reads the whole 8000-token cache
    from qesim.hw.loader import load_hw
    from qesim.perf.model import estimate_graph

    hw = load_hw("flightllm-u280")
    spec = load_hf_spec(m)
    full = spec.model_copy(update={"sliding_window": None, "sliding_layers": 0})
    t_sw = estimate_graph(dec, hw).latency_s
    t_full = estimate_graph(build_graph(full, stage="decode", context_len=8000), hw).latency_s
    assert t_sw < t_full


def test_gemma_layer_patterns():
    g2 = _attn(build_graph(str(DATA / "gemma-2-9b"), stage="decode", context_len=8000))
    assert g2["layer.attention"].repeat == 21 and g2["layer.attention_swa"].repeat == 21
    g3 = _attn(build_graph(str(DATA / "gemma-3-1b"), stage="decode", context_len=8000))
    # 26 layers, global at 5, 11, 17, 23 (every sixth)
    assert g3["layer.attention"].repeat == 4 and g3["layer.attention_swa"].repeat == 22
    assert g3["layer.attention_swa"].kv_len == 512
    names = [o.name for o in build_graph(str(DATA / "gemma-3-1b"), stage="prefill").ops]
    assert "layer.attn_out_norm" in names and "layer.mlp_out_norm" in names  # Gemma's sandwich norms


def test_moe_and_mla_structure():
    v3 = build_graph(str(DATA / "deepseek-v3"), stage="decode", context_len=1024)
    moe = next(o for o in v3.ops if o.kind == "moe")
    assert (moe.experts, moe.top_k, moe.shared_experts, moe.repeat) == (256, 8, 1, 58)
    dense = next(o for o in v3.ops if o.name == "layer.gate_proj")
    assert dense.repeat == 3  # first_k_dense_replace
    att = _attn(v3)["layer.attention"]
    assert (att.kv_heads, att.head_dim * 2) == (1, 512 + 64)  # the compressed latent + rope key
    assert "layer.q_a_proj" in {o.name for o in v3.ops}  # q_lora_rank 1536
    q = next(o for o in build_graph(str(DATA / "qwen1.5-moe-a2.7b"), stage="prefill").ops if o.kind == "moe")
    assert (q.experts, q.top_k, q.shared_width, q.repeat) == (60, 4, 5632, 24)
    mx = next(o for o in build_graph(str(DATA / "mixtral-8x7b"), stage="prefill").ops if o.kind == "moe")
    assert (mx.experts, mx.top_k, mx.shared_experts, mx.expert_intermediate) == (8, 2, 0, 14336)


def test_bad_configs_are_one_line_errors(tmp_path):
    (tmp_path / "falconish").mkdir()
    (tmp_path / "falconish" / "config.json").write_text(json.dumps({"model_type": "rwkv", "hidden_size": 8}))
    with pytest.raises(InputError, match="supported: llama, mistral"):
        load_hf_spec(tmp_path / "falconish")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no config.json"):
        get_spec(str(tmp_path / "empty"))
    (tmp_path / "x.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(InputError, match="model_type"):
        load_hf_spec(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_hf_spec(tmp_path / "bad.json")
    with pytest.raises(InputError, match="unknown model"):
        get_spec("no-such-model")


def test_cli_estimate_takes_a_config_dir_and_file(capsys, tmp_path, monkeypatch):
    from qesim.cli import main

    monkeypatch.chdir(tmp_path)
    for m in (DATA / "llama3-8b", DATA / "llama3-8b" / "config.json"):
        assert main(["estimate", "--model", str(m), "--hw", "flightllm-u280", "--stage", "decode",
                     "--setting", "W4A8", "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["model"] == "meta-llama/Meta-Llama-3-8B" and d["speedup_vs_fp16"] > 1
    assert main(["estimate", "--model", str(tmp_path / "missing.json")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_sweep_space_with_an_hf_config_and_the_spec_travels_to_a_worker(tmp_path):
    pytest.importorskip("pyarrow")
    import shutil

    from qesim.dse.evaluate import evaluate_space
    from qesim.dse.space import load_space

    shutil.copytree(DATA / "mistral-7b", tmp_path / "models" / "mistral")
    f = tmp_path / "space.yaml"
    f.write_text("space:\n  base: flightllm-u280\n  hw:\n    hbm.bandwidth_gbps: [230, 460]\n"
                 "  workload:\n    model: [models/mistral, qwen2vl-2b]\n    setting: [W16A16, W4A8]\n"
                 "    stage: decode\n    context_len: 6000\n")
    sp = load_space(f)  # the path is relative to the space file, not to the working directory
    assert set(sp.models) == {"models/mistral"}
    local = evaluate_space(sp)
    # a fresh interpreter in another directory, given only the task (the space dict), no files
    code = ("import json,sys; from qesim.dse.runner import eval_chunk_spec; "
            "spec=json.load(sys.stdin); df=eval_chunk_spec(spec, 0, 8); print(df['cycles'].tolist())")
    other = tmp_path / "elsewhere"
    other.mkdir()
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", code], input=json.dumps(sp.to_dict(), default=str), text=True,
                       capture_output=True, cwd=other, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout) == local["cycles"].tolist()
