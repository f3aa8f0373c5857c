"""``qesim estimate``: latency, cycles, bytes and bound of one model pass on one hardware config.

    qesim estimate --model qwen2vl-7b --hw flightllm-u280 --setting W4A8 --method qe \\
                   --stage prefill --seq-len 128 [--context 0] [--batch 1] [--density D|NAME=D,...] [--group-size G] \\
                   [--engine analytical|cycle] [--json]
    qesim estimate --model G.json --hw qe-paper-npu          # an exported / hand-written graph
    qesim estimate --model qwen2vl-72b --hw flightllm-u280 --devices auto [--parallel tp|pp|ep|tp*pp]
    qesim estimate --model qwen2vl-7b --images 2 --image-size 896x672 --seq-len 64 \\
                   --setting W4A6 --method qe --quantize L,V,M   # vision + merger + LLM, per component
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qesim.errors import InputError


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="model preset name, a layer-graph JSON file, an HF config.json, or a directory holding one")
    p.add_argument("--hw", default="qe-paper-npu", help="hardware preset name or YAML path (default qe-paper-npu)")
    p.add_argument("--setting", default=None, help="W{w}A{a}, e.g. W4A8, W3A16; W16A16 = fp16 (default)")
    p.add_argument("--method", default=None, help="adapter structure: none, rtn, smoothquant, awq, gptq, lqer, aser, qe")
    p.add_argument("--stage", choices=["prefill", "decode"], default="prefill")
    p.add_argument("--seq-len", type=int, default=128, help="prefill tokens per sequence (default 128)")
    p.add_argument("--context", type=int, default=None,
                   help="tokens already in the KV cache (default: 0 for prefill, 512 for decode)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--density", default="1.0",
                   help="kept weight fraction (N:M sparsity), 0 < D <= 1, of every decoder linear; or per linear, "
                   "NAME=D[,NAME=D...] (e.g. q_proj=0.7,k_proj=0.7; the others stay dense)")
    p.add_argument("--group-size", type=int, default=None,
                   help="weights per quantization group along in_features (-1 = per output channel; default: g128 "
                   "for weight-only settings, per channel for W-A settings)")
    p.add_argument("--kv-bits", type=int, default=None, help="KV-cache bits (default 16)")
    add_image_args(p)


def add_image_args(p: argparse.ArgumentParser) -> None:
    """--images / --image-size / --quantize: a whole vision-language request (qesim.graph.vision)."""
    p.add_argument("--images", type=int, default=None,
                   help="images per sequence: adds the vision encoder and merger, and the image tokens to the "
                        "--seq-len text tokens (VLM presets only)")
    p.add_argument("--image-size", default="448x448", help="WIDTHxHEIGHT in pixels of each image (default 448x448)")
    p.add_argument("--quantize", default=None,
                   help="parts the setting quantizes: comma list of L (language model), V (visual encoder), "
                        "M (merger); default L, as the QE paper's main tables")


def _vlm_requested(args: argparse.Namespace) -> bool:
    return getattr(args, "images", None) is not None or getattr(args, "quantize", None) is not None


def is_graph_file(model: str) -> bool:
    """Whether ``--model`` names a layer-graph JSON file (not a preset, not an HF config)."""
    from qesim.api import is_graph

    return is_graph(model)


def _workload(args: argparse.Namespace) -> dict:
    """The model/workload keyword arguments of :func:`qesim.estimate` the arguments describe."""
    kw = dict(stage=args.stage, seq_len=args.seq_len, context_len=args.context, batch=args.batch)
    if is_graph_file(args.model):
        if args.setting is not None or args.method is not None:
            raise InputError(f"--setting/--method cannot be combined with a graph file ({args.model}): "
                             "its bits and adapters come from the file")
        if _vlm_requested(args):
            raise InputError(f"--images/--quantize cannot be combined with a graph file ({args.model})")
        return kw
    from qesim.graph.settings import parse_density

    try:
        parse_density(args.density)
    except InputError as e:
        raise InputError(f"--density: {e}") from None
    kw.update(setting="W16A16" if args.setting is None else args.setting,
              method="none" if args.method is None else args.method, density=args.density,
              kv_bits=args.kv_bits, group_size=getattr(args, "group_size", None))
    if _vlm_requested(args):
        kw.update(images=args.images or 0, image_size=args.image_size, quantize=args.quantize)
    return kw


def graph_from_args(args: argparse.Namespace):
    """The LayerGraph the arguments describe (a preset or an HF config built on the fly, or a
    layer-graph JSON file)."""
    from qesim.api import build_graph

    return build_graph(args.model, **_workload(args))


def run_engine(graph, hw, engine: str):
    from qesim.perf.engines import run_engine as _run

    return _run(engine, graph, hw)


def register(sub) -> None:
    p = sub.add_parser("estimate", help="latency / cycles / bytes / bound of one pass",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    from qesim.perf.engines import engine_names

    p.add_argument("--engine", choices=engine_names(), default="analytical")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--strict", action="store_true",
                   help="exit 2 when the model's footprint does not fit the memories (default: a warning)")
    from qesim.commands.devices import add_device_args

    add_device_args(p)
    p.set_defaults(func=run)


def _fmt_bytes(b: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= div:
            return f"{b / div:.2f} {unit}"
    return f"{b:.0f} B"


def _energy_line(e: dict) -> str:
    if e["model"] == "none":
        return "energy: not known for this config (no energy section)"
    parts = [f"energy {e['energy_per_token_j'] * 1e3:.4g} mJ/token", f"avg power {e['avg_power_w']:.4g} W "
             f"({e['model']})"]
    if e["area_mm2"] is not None:
        parts.append(f"area {e['area_mm2']:.4g} mm^2")
    if e["cost_usd"] is not None:
        parts.append(f"die cost ${e['cost_usd']:.4g}")
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    from qesim.api import estimate
    from qesim.commands import devices

    if devices.requested(args):   # several devices over the config's interconnect (qesim.perf.multidevice)
        return devices.run_devices(args, _workload(args))
    est = estimate(args.model, args.hw, engine=args.engine, strict=args.strict, **_workload(args))
    d = est.to_dict()
    hw, graph = est.hw, est.graph
    from qesim.safeio import dumps_finite, require_finite

    require_finite(d, f"estimate of {graph.name} on {hw.name}")
    if args.json:
        print(dumps_finite(d))
        return 0
    print(f"{graph.model} {graph.stage} (batch {graph.batch}, seq {graph.seq_len}, context {graph.context_len}) "
          f"{graph.setting} method={graph.method} on {hw.name} [{args.engine}]")
    print(f"latency {d['latency_s'] * 1e3:.3f} ms  ({d['cycles']:.4g} cycles @ {hw.frequency_mhz:g} MHz)  "
          f"{d['tokens_per_s']:.1f} tokens/s  bound: {d['bound']}")
    if "speedup_vs_fp16" in d:
        print(f"speedup vs W16A16 on the same hardware: {d['speedup_vs_fp16']:.3f}x")
    vlm = "image_tokens" in d
    if vlm:
        print(f"request: {d['images']} image(s) of {graph.meta['image_width']}x{graph.meta['image_height']} px "
              f"({graph.meta['image_detail']}) -> {d['image_tokens']} image tokens + {d['text_tokens']} text tokens; "
              f"quantized parts: {d['quantize'] or 'none'}")
        for c, v in d["components"].items():
            print(f"  {c:<9} {v['latency_s'] * 1e3:10.3f} ms  {_fmt_bytes(v['bytes']):>11}  bound: {v['bound']}")
    print(_energy_line(d["energy"]))
    print("off-chip bytes: " + ", ".join(f"{m} {_fmt_bytes(v)}" for m, v in d["bytes"].items() if v))
    print(("memory: fits: " if d["fits"] else "memory: DOES NOT FIT: ") + est.footprint.describe())
    print("utilisation: " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in d["utilization"].items() if v))
    for w in d["warnings"]:
        print(f"warning: {w}")
    total = d["cycles"] or 1.0
    w = max([22] + [len(o["name"]) for o in d["ops"]]) if vlm else 22
    hdr = f"{'op':<{w}} {'kind':<9} {'x':>3} {'cycles/call':>12} {'share':>6} {'bytes/call':>11} {'bound':<8} tile"
    print(hdr)
    print("-" * len(hdr))
    for o in d["ops"]:
        print(f"{o['name']:<{w}} {o['kind']:<9} {o['repeat']:>3} {o['cycles']:>12.4g} "
              f"{o['total_cycles'] / total * 100:>5.1f}% {_fmt_bytes(o['bytes']):>11} {o['bound']:<8} {o['tile']}")
    if d["fused_into"]:
        groups: dict = {}
        for sfu, into in d["fused_into"].items():
            groups.setdefault(into, []).append(sfu)
        print("fused SFU ops (policy.sfu_fusion; their cycles and bytes are in the row named first): "
              + "; ".join(f"{into} <- {', '.join(v)}" for into, v in groups.items()))
    return 0
