"""Memory footprint: hand-computed weights / KV cache / adapters, capacities, estimate and sweeps."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import qesim
from qesim.cli import main
from qesim.perf.footprint import GIB, footprint

DATA = Path(__file__).parent / "data" / "hf_configs"


def _fp(model, hw="flightllm-u280", **kw):
    return footprint(qesim.build_graph(model, **kw), qesim.load_hw(hw))


def test_qwen2vl_72b_fp16_does_not_fit_the_u280():
    fp = _fp("qwen2vl-72b", stage="decode")
    h, i, L, V = 8192, 29568, 80, 152064
    layer = h * h * 2 + 2 * h * 1024 + 3 * h * i  # q, o; k, v (8 kv heads x 128); gate, up, down
    assert fp.components["hbm"]["weights"] == pytest.approx(2.0 * (L * layer + V * h))  # + untied lm_head
    assert fp.components["ddr"]["embeddings"] == 2.0 * V * h  # placement.embeddings: ddr on the U280
    assert not fp.fits and fp.over_bytes["hbm"] > 100 * GIB and "ddr" not in fp.over_bytes
    assert "does not fit" in fp.warning() and "hbm" in fp.warning()


def test_kv_cache_and_quant_metadata_by_hand():
    fp = _fp("llama2-7b", "nvidia-a100", stage="decode", context_len=4096, batch=2)
    assert fp.components["hbm"]["kv_cache"] == 2 * 2 * 32 * 32 * 128 * 4097 * 2  # K+V, batch, layers, heads, dim, tokens, bytes
    w16 = _fp("llama2-7b", stage="prefill").components["hbm"]["weights"]
    w4 = _fp("llama2-7b", stage="prefill", setting="W4A8").components["hbm"]["weights"]
    lin = 32 * (4 * 4096 ** 2 + 3 * 4096 * 11008)
    outs = 32 * (4 * 4096 + 2 * 11008 + 4096)  # output channels of the layer linears (one fp16 scale each)
    head = 32000 * 4096 * 2  # lm_head stays fp16
    assert w16 == lin * 2 + head
    assert w4 == pytest.approx(lin * 0.5 + outs * 2 + head)
    w3 = _fp("llama2-7b", stage="prefill", setting="W3A16").components["hbm"]["weights"]
    groups = 32 * (4 * 4096 * 32 + 2 * 11008 * 32 + 4096 * math.ceil(11008 / 128))  # N x ceil(K/128)
    assert w3 == pytest.approx(lin * 3 / 8 + groups * (16 + 3) / 8 + head)  # asymmetric: scale + zero


def test_tied_embeddings_mla_sliding_window_adapters():
    a = _fp("qwen2vl-2b", stage="prefill")  # tied lm_head: the table is counted once
    assert a.components["ddr"]["embeddings"] == 151936 * 1536 * 2
    assert a.components["hbm"]["weights"] == 2 * 28 * (2 * 1536 * 1536 + 2 * 1536 * 256 + 3 * 1536 * 8960)
    k = _fp("kimi-vl-a3b", stage="decode", context_len=1000)
    assert k.components["hbm"]["kv_cache"] == 27 * 576 * 1001 * 2  # latent 512 + rope key 64 per token
    m = _fp(str(DATA / "mistral-7b"), stage="decode", context_len=8000)
    assert m.components["hbm"]["kv_cache"] == 2 * 32 * 8 * 128 * 4096 * 2  # the window, not 8001 tokens
    base = _fp("qwen2vl-7b", stage="decode", setting="W4A8").components["hbm"]["adapters"]
    qe = _fp("qwen2vl-7b", stage="decode", setting="W4A8", method="qe").components["hbm"]["adapters"]
    kn = sum(k + n for k, n in ((3584, 3584), (3584, 512), (3584, 512), (3584, 3584), (3584, 18944),
                                (3584, 18944), (18944, 3584)))
    routers = 3584 * 6 + 18944  # q,k,v,o,gate,up read 3584 features, down 18944; x 8 experts
    assert base == 0 and qe == 28 * (32 * kn + 8 * 32 * kn + 8 * routers) * 2


def test_estimate_reports_it_and_strict_refuses(capsys):
    assert main(["estimate", "--model", "qwen2vl-72b", "--hw", "flightllm-u280", "--stage", "decode", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fits"] is False and d["footprint_bytes"]["hbm"] > d["capacity_bytes"]["hbm"] == 8 * GIB
    assert set(d["footprint_detail_bytes"]["hbm"]) >= {"weights", "kv_cache", "adapters", "activations"}
    assert any("does not fit" in w for w in d["warnings"])
    assert main(["estimate", "--model", "qwen2vl-72b", "--hw", "flightllm-u280", "--stage", "decode", "--strict"]) == 2
    assert "does not fit" in capsys.readouterr().err
    r = qesim.estimate("qwen2vl-2b", "flightllm-u280", stage="decode", strict=True)
    assert r.fits and r.to_dict()["fits"] is True and "fits=True" in repr(r)
    with pytest.raises(qesim.InputError, match="does not fit"):
        qesim.estimate("qwen2vl-72b", "flightllm-u280", stage="decode", strict=True)


def test_sweeps_get_fits_and_fronts_skip_what_does_not_fit():
    from qesim.dse.pareto import pareto_front

    df = qesim.sweep({"base": "flightllm-u280", "hw": {"hbm.capacity_gib": [4, 64], "hbm.bandwidth_gbps": [230, 920]},
                      "workload": {"model": "qwen2vl-7b", "setting": ["W16A16", "W4A8"], "stage": "decode"}})
    small = df[df["hbm.capacity_gib"] == 4]
    assert not small["fits"].any() and df[df["hbm.capacity_gib"] == 64]["fits"].all()
    w4 = df[df["setting"] == "W4A8"].iloc[0]
    ref = _fp("qwen2vl-7b", stage="decode", setting="W4A8", context_len=0)
    assert w4["footprint_hbm_bytes"] == pytest.approx(ref.bytes["hbm"])
    front = pareto_front(df, {"latency_s": "min", "hbm.capacity_gib": "min"}, by=["setting"])
    assert front["fits"].all() and len(front)
    # without the fits rule the 4 GiB points (cheaper capacity, same latency) would dominate
    assert (pareto_front(df.drop(columns="fits"), {"latency_s": "min", "hbm.capacity_gib": "min"},
                         by=["setting"])["hbm.capacity_gib"] == 4).all()


def test_streamed_sweep_front_skips_points_that_do_not_fit(tmp_path):
    pytest.importorskip("pyarrow")
    pytest.importorskip("moocore")
    import pandas as pd

    f = tmp_path / "s.yaml"
    f.write_text("space:\n  base: flightllm-u280\n  hw:\n    hbm.capacity_gib: [4, 64]\n    scale.macs: [0.5, 1]\n"
                 "  workload:\n    model: qwen2vl-7b\n    setting: [W16A16, W4A8]\n    stage: decode\n")
    assert main(["sweep", str(f), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    front = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert len(front) and front["fits"].all() and (front["hbm.capacity_gib"] == 64).all()
