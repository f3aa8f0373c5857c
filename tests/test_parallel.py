"""Multi-device: TP/PP/EP shard graphs, collectives over the interconnect, --devices auto (hand checks
and invariants)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qesim.errors import InputError
from qesim.graph.builders import build_graph
from qesim.graph.parallel import ParallelPlan, ep_shard, parse_parallel, pp_stages, tp_shard
from qesim.graph.vision import build_vlm_graph
from qesim.hw.loader import load_hw
from qesim.perf.estimate import estimate_graph
from qesim.perf.multidevice import auto_plan, device_footprint, estimate_parallel


def test_parse_parallel():
    assert parse_parallel("tp", 4) == ParallelPlan(tp=4)
    assert parse_parallel(None, 2) == ParallelPlan(tp=2)
    assert parse_parallel("tp*pp", 24) == ParallelPlan(tp=8, pp=3)
    assert parse_parallel("tp2*pp4", 8) == ParallelPlan(tp=2, pp=4)
    for bad, n in (("tp2*pp4", 6), ("dp", 2), ("tpx", 2)):
        with pytest.raises(InputError):
            parse_parallel(bad, n)


def test_tp_shard_splits_linears_heads_and_adds_two_allreduces_per_layer():
    g = build_graph("qwen2vl-7b", stage="prefill", seq_len=128)
    d, comms = tp_shard(g, 2)
    by = {op.name: op for op in d.ops}
    assert by["layer.q_proj"].out_features == 3584 // 2 and by["layer.o_proj"].in_features == 3584 // 2
    assert by["layer.gate_proj"].out_features == 18944 // 2 and by["layer.down_proj"].in_features == 18944 // 2
    att = by["layer.attention"]
    assert (att.heads, att.kv_heads) == (14, 2)
    assert by["layer.input_norm"].width == 3584                  # norms replicated
    assert by["layer.act"].width == 18944 // 2                    # between column and row parallel
    ar = [c for c in comms if c.kind == "allreduce" and c.where.startswith("layer.")]
    assert [c.where for c in ar] == ["layer.o_proj", "layer.down_proj"]
    assert all(c.nbytes == 128 * 3584 * 2 and c.count == 28 for c in ar)
    # weights halve (up to the replicated embedding / norms)
    w1, w2 = device_footprint(g)["weights"], device_footprint(d)["weights"]
    assert w2 == pytest.approx(w1 / 2, rel=1e-9)


def test_tp_shard_vision_and_gqa_replication():
    g = build_vlm_graph("qwen2vl-2b", stage="prefill", images=1, image_size=(448, 448), text_tokens=16)
    d, comms = tp_shard(g, 4)
    by = {op.name: op for op in d.ops}
    assert by["vision.block.qkv"].out_features == 3 * 1280 // 4 and by["vision.block.proj"].in_features == 320
    assert by["vision.block.attention"].heads == 4 and by["vision.patch_embed"].out_features == 1280
    assert by["layer.attention"].kv_heads == 1                       # 2 kv heads over 4 devices: replicated
    assert {c.component for c in comms} == {"vision", "merger", "language"}
    with pytest.raises(InputError):
        tp_shard(g, 5)


def test_pp_stages_partition_layers():
    g = build_graph("qwen2vl-7b", stage="prefill", seq_len=64)
    st, sent = pp_stages(g, 3)
    assert [s.meta["stage_layers"] for s in st] == [9, 10, 9]
    assert sum(next(o for o in s.ops if o.name == "layer.q_proj").repeat for s in st) == 28
    assert st[0].ops[0].name == "embedding" and st[-1].ops[-1].name == "lm_head"
    assert "lm_head" not in {o.name for o in st[0].ops}
    assert sent == 64 * 3584 * 2
    total = sum(estimate_graph(s, load_hw("flightllm-u280")).cycles for s in st)
    assert total == pytest.approx(estimate_graph(g, load_hw("flightllm-u280")).cycles, rel=1e-9)


def test_ep_shard_experts_and_all_to_all():
    g = build_graph("qwen3-vl-30b-a3b", stage="prefill", seq_len=64)
    d, comms = ep_shard(g, 4)
    moe = next(o for o in d.ops if o.kind == "moe")
    assert moe.experts == 32 and moe.top_k == 2 and moe.tokens == 64          # 64 x 8 slots / 4 devices / 2
    assert len(comms) == 1 and comms[0].count == 2 * 48
    assert comms[0].nbytes == 64 * 8 * 2048 * 2 / 4
    with pytest.raises(InputError):
        ep_shard(build_graph("qwen2vl-2b", stage="prefill", seq_len=8), 2)


@pytest.mark.parametrize("hw_name", ["flightllm-u280", "qe-paper-npu"])
def test_tp2_slower_on_slow_link_faster_on_fast(hw_name):
    hw = load_hw(hw_name)
    g = build_graph("qwen2vl-2b", stage="prefill", seq_len=128)
    one = estimate_parallel(g, hw, ParallelPlan())["latency_s"]
    slow = estimate_parallel(g, hw.with_updates({"interconnect.link_bandwidth_gbps": 0.1}), ParallelPlan(tp=2))
    fast = estimate_parallel(g, hw.with_updates({"interconnect.link_bandwidth_gbps": 1000.0,
                                                 "interconnect.link_latency_us": 0.1}), ParallelPlan(tp=2))
    assert slow["latency_s"] > one > fast["latency_s"]
    assert slow["device_s"] == pytest.approx(fast["device_s"]) and slow["device_s"] < one   # the same shard
    assert slow["collective_s"] > fast["collective_s"] > 0


def test_collective_time_by_hand():
    hw = load_hw("flightllm-u280")   # ring, 12.5 GB/s x 0.95, 2 us
    g = build_graph("qwen2vl-2b", stage="decode", context_len=100)
    r = estimate_parallel(g, hw, ParallelPlan(tp=2))
    bw, lat = 12.5e9 * 0.95, 2e-6
    ar = lambda b: 2 * 1 / 2 * b / bw + 2 * 1 * lat  # noqa: E731
    # per layer 2 all-reduces of 1 x 1536 fp16; the embedding one; lm_head all-gather of 151936 logits
    want = 28 * 2 * ar(1536 * 2) + ar(1536 * 2) + (1 / 2 * 151936 * 2 / bw + lat)
    assert r["collective_s"] == pytest.approx(want)


def test_pipeline_bubble_and_micro_batches():
    hw = load_hw("flightllm-u280")
    g = build_graph("qwen2vl-7b", stage="prefill", seq_len=64, batch=4)
    r1 = estimate_parallel(g, hw, ParallelPlan(pp=2), micro_batches=1)
    mb = lambda b: build_graph("qwen2vl-7b", stage="prefill", seq_len=64, batch=b)  # noqa: E731
    r4 = estimate_parallel(g, hw, ParallelPlan(pp=2), micro_graph=mb, micro_batches=4)
    assert r1["bubble_fraction"] == pytest.approx(1 / 2) and r4["bubble_fraction"] == pytest.approx(1 / 5)
    for r, m in ((r1, 1), (r4, 4)):   # (m + p - 1) x slowest stage + one stage-to-stage send per boundary
        t = max(s["device_s"] + s["collective_s"] for s in r["per_stage"])
        assert r["latency_s"] == pytest.approx((m + 1) * t + r["p2p_s"])
        assert r["pipeline_bubble_s"] == pytest.approx(t)
    # micro-batches of one sequence re-stream every weight per micro-batch: on this config that costs more
    # than the smaller bubble saves (the model does not assume micro-batching helps)
    assert r4["per_stage"][0]["device_s"] < r1["per_stage"][0]["device_s"]


def test_no_interconnect_is_an_input_error():
    with pytest.raises(InputError, match="interconnect"):
        estimate_parallel(build_graph("qwen2vl-2b", stage="decode"), load_hw("flightllm-vhk158"), ParallelPlan(tp=2))


def test_auto_qwen2vl_72b_fp16_on_u280():
    hw = load_hw("flightllm-u280")
    g = build_graph("qwen2vl-72b", stage="prefill", seq_len=128)
    plan = auto_plan(g, hw)
    assert plan.devices > 1
    cap = hw.hbm.capacity_gib * 2**30
    assert device_footprint(g)["weights"] / plan.devices < cap       # a necessary condition
    r = estimate_parallel(g, hw, plan)
    assert r["fits"] and r["collective_s"] > 0 and r["latency_s"] > r["device_s"]
    # one device fewer with the same axes does not fit
    smaller = ParallelPlan(tp=plan.tp, pp=plan.pp - 1) if plan.pp > 1 else ParallelPlan(tp=plan.tp // 2)
    st, _ = pp_stages(g, smaller.pp)
    assert not all(estimate_parallel(s, hw, ParallelPlan(tp=smaller.tp))["fits"] for s in st)


def test_cli_devices_auto_json():
    r = subprocess.run([sys.executable, "-m", "qesim.cli", "estimate", "--model", "qwen2vl-72b", "--hw",
                        "flightllm-u280", "--devices", "auto", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["devices"] > 1 and d["fits"] and d["collective_s"] > 0 and "latency_s" in d and d["per_stage"]
    bad = subprocess.run([sys.executable, "-m", "qesim.cli", "estimate", "--model", "qwen2vl-2b", "--devices",
                          "two"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_system_energy_one_device_is_the_single_device_estimate():
    hw = load_hw("qe-paper-npu")   # per-action energy model
    g = build_graph("qwen2vl-2b", stage="prefill", seq_len=64)
    r = estimate_parallel(g, hw, ParallelPlan())
    e = estimate_graph(g, hw).energy
    assert r["energy_model"] == "per-action"
    assert r["energy_j"] == pytest.approx(e["energy_j"], rel=1e-12)
    assert r["energy_per_token_j"] == pytest.approx(e["energy_per_token_j"], rel=1e-12)


def test_system_energy_by_hand_tp2():
    """Two devices: each adds its shard's dynamic energy, and its static power over the whole pass
    (collectives included), so a slower link costs static energy on both devices."""
    hw = load_hw("qe-paper-npu")
    g = build_graph("qwen2vl-2b", stage="prefill", seq_len=64)
    hw = hw.with_updates({"interconnect.link_bandwidth_gbps": 1.0})
    r = estimate_parallel(g, hw, ParallelPlan(tp=2))
    shard, _ = tp_shard(g, 2)
    e = estimate_graph(shard, hw).energy
    dyn = e["energy_j"] - e["by_class_j"]["static"]
    want = 2 * dyn + 2 * e["static_w"] * r["latency_s"]
    assert e["static_w"] > 0 and r["collective_s"] > 0
    assert r["energy_j"] == pytest.approx(want, rel=1e-12)
    assert r["avg_power_w"] == pytest.approx(want / r["latency_s"], rel=1e-12)
    faster = estimate_parallel(g, hw.with_updates({"interconnect.link_bandwidth_gbps": 100.0}), ParallelPlan(tp=2))
    assert faster["energy_j"] < r["energy_j"]


def test_system_energy_board_power_config():
    hw = load_hw("nvidia-a100")   # board power only: energy = devices x board power x pass time
    g = build_graph("llama2-7b", stage="decode", context_len=128)
    r = estimate_parallel(g, hw, ParallelPlan(tp=2))
    assert r["energy_model"] == "board-power"
    assert r["energy_j"] == pytest.approx(2 * hw.energy.board_power_w * r["latency_s"], rel=1e-9)
