"""Whole-request inference (prefill + decode over a growing context) and its CLI."""

from __future__ import annotations

import json

import pytest

from qesim.cli import main
from qesim.errors import InputError
from qesim.graph.builders import build_graph
from qesim.hw.loader import load_hw
from qesim.perf.inference import integrate_steps, parse_request, request_latency, sample_points
from qesim.perf.model import estimate_graph


def test_sample_points_and_integration():
    assert sample_points(10, 4) == [0, 4, 8, 9]
    assert sample_points(1, 128) == [0]
    assert sample_points(0, 4) == []
    # linear f(j) = 2 + 3j: exact from two samples
    pts = sample_points(100, 40)
    assert integrate_steps(pts, [2 + 3 * j for j in pts], 100) == pytest.approx(sum(2 + 3 * j for j in range(100)))
    with pytest.raises(InputError):
        sample_points(5, 0)


def test_request_parts_match_single_passes():
    hw = load_hw("flightllm-u280")
    r = request_latency("smollm2-135m", hw, setting="W4A8", method="qe", prefill=64, decode=20, sample_every=1)
    pre = estimate_graph(build_graph("smollm2-135m", stage="prefill", seq_len=64, setting="W4A8", method="qe"), hw)
    assert r.ttft_s == pytest.approx(pre.latency_s)
    steps = [estimate_graph(build_graph("smollm2-135m", stage="decode", context_len=64 + j, setting="W4A8",
                                        method="qe"), hw).latency_s for j in range(20)]
    assert r.decode_s == pytest.approx(sum(steps))
    assert r.e2e_s == pytest.approx(r.ttft_s + r.decode_s)
    assert r.decode_tokens_per_s == pytest.approx(20 / sum(steps))
    assert [c for c, _ in r.samples] == list(range(64, 84))
    # the decode step cost grows with the context (attention reads more K/V)
    assert steps[-1] > steps[0]


def test_sampled_decode_close_to_exact():
    hw = load_hw("flightllm-vhk158")
    exact = request_latency("qwen2vl-2b", hw, setting="W8A8", prefill=128, decode=300, sample_every=1)
    sampled = request_latency("qwen2vl-2b", hw, setting="W8A8", prefill=128, decode=300, sample_every=128)
    assert len(sampled.samples) == 4
    assert sampled.decode_s == pytest.approx(exact.decode_s, rel=0.002)


@pytest.mark.parametrize("hwn", ["flightllm-u280", "flightllm-vhk158"])
def test_flightllm_llama2_requests(hwn):
    hw = load_hw(hwn)
    res = {(s, n): request_latency("llama2-7b", hw, setting="W8A8", prefill=s, decode=n)
           for s, n in ((128, 512), (128, 1536), (512, 512))}
    for r in res.values():
        assert r.prefill_bound == "compute" and r.decode_bound == "hbm"
        assert 0 < r.decode_tokens_per_s < 1000
    # longer context -> slower decode; longer prompt -> later first token (compute-bound: ~4x)
    assert res[128, 1536].decode_tokens_per_s < res[128, 512].decode_tokens_per_s
    assert 3.5 < res[512, 512].ttft_s / res[128, 512].ttft_s < 4.6
    assert res[512, 512].decode_tokens_per_s < res[128, 512].decode_tokens_per_s


def test_always_on_chip_decode_and_sparsity_switches():
    hw = load_hw("flightllm-u280")
    off = hw.with_updates({"policy.decode.activations_offchip": True})
    base = request_latency("qwen2vl-2b", hw, setting="W8A8", prefill=128, decode=64)
    streamed = request_latency("qwen2vl-2b", off, setting="W8A8", prefill=128, decode=64)
    assert base.ttft_s == pytest.approx(streamed.ttft_s)  # the switch is decode-only
    assert base.decode_s < streamed.decode_s
    sparse = request_latency("qwen2vl-2b", hw, setting="W8A8", prefill=128, decode=64, density=0.5)
    assert sparse.decode_s < base.decode_s


def test_cycle_engine_request_agrees():
    hw = load_hw("flightllm-u280")
    a = request_latency("qwen2vl-2b", hw, setting="W4A8", method="qe", prefill=128, decode=64, sample_every=32)
    c = request_latency("qwen2vl-2b", hw, setting="W4A8", method="qe", prefill=128, decode=64, sample_every=32,
                        engine="cycle")
    assert c.engine == "cycle"
    assert c.e2e_s == pytest.approx(a.e2e_s, rel=0.03)
    with pytest.raises(InputError):
        request_latency("qwen2vl-2b", hw, engine="roofline")


def test_parse_request():
    assert parse_request("128,512") == (128, 512)
    assert parse_request("[512, 1536]") == (512, 1536)
    for bad in ("128", "a,b", "0,5", "1,2,3"):
        with pytest.raises(InputError):
            parse_request(bad)


def test_inference_cli(capsys):
    assert main(["inference", "--model", "smollm2-135m", "--hw", "flightllm-u280", "--setting", "W4A8",
                 "--method", "qe", "--request", "32,16", "--request", "64,8", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [(r["prefill"], r["decode"]) for r in d["requests"]] == [(32, 16), (64, 8)]
    r = d["requests"][0]
    assert r["e2e_s"] == pytest.approx(r["ttft_s"] + r["decode_s"])
    assert r["decode_tokens_per_s"] > 0
    assert main(["inference", "--model", "smollm2-135m", "--request", "32"]) == 2
    assert main(["inference", "--model", "smollm2-135m", "--request", "8,4", "--engine", "cycle"]) == 0
    assert "[8, 4]" in capsys.readouterr().out
