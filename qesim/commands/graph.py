"""``qesim graph``: layer-graph JSON schema, whole-model graph builder, shape presets.

    qesim graph schema                    # JSON schema of a layer graph
    qesim graph presets [--json]          # known models with their key dimensions
    qesim graph build --model NAME --stage prefill|decode [--seq-len N] [--context N] [--batch B]
                      [--setting W4A8] [--method qe] [--density D|NAME=D,...] [--group-size G]
                      [--kv-bits B] [--out G.json]
                      [--images N --image-size WxH --quantize L,V,M]   # + vision encoder and merger
"""

from __future__ import annotations

import argparse
import json
import sys

from qesim.errors import InputError


def _schema(args: argparse.Namespace) -> int:
    if args.out:
        from qesim.safeio import check_out_file

        check_out_file(args.out)
    from qesim.graph.ir import graph_json_schema

    text = json.dumps(graph_json_schema(), indent=1)
    if args.out:
        _write(args.out, text)
    else:
        print(text)
    return 0


def _presets(args: argparse.Namespace) -> int:
    from qesim.graph.presets import get_spec, preset_names

    rows = [get_spec(n).summary() for n in preset_names()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    cols = ["name", "arch", "layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab", "params"]
    table = [[("%.3gB" % (r[c] / 1e9) if c == "params" and r[c] else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    unver = [(r["name"], r["unverified"]) for r in rows if r["unverified"]]
    for name, u in unver:
        print(f"note: {name}: unverified fields: {u}")
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror})") from None


def _build(args: argparse.Namespace) -> int:
    if args.out:
        from qesim.safeio import check_out_file

        check_out_file(args.out)
    from qesim.graph.builders import build_graph

    if args.images is not None or args.quantize is not None:
        from qesim.graph.vision import build_vlm_graph, parse_image_size

        g = build_vlm_graph(args.model, stage=args.stage, images=args.images or 0,
                            image_size=parse_image_size(args.image_size), text_tokens=args.seq_len,
                            context_len=args.context, batch=args.batch, setting=args.setting, method=args.method,
                            quantize=args.quantize, density=args.density, kv_bits=args.kv_bits,
                            group_size=args.group_size)
    else:
        g = build_graph(args.model, stage=args.stage, seq_len=args.seq_len, context_len=args.context,
                        batch=args.batch, setting=args.setting, method=args.method, density=args.density,
                        kv_bits=args.kv_bits, group_size=args.group_size)
    text = g.to_json()
    if args.out:
        _write(args.out, text)
        print(f"wrote {args.out}: {g.name}, {len(g.ops)} ops", file=sys.stderr)
    else:
        print(text)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("graph", help="layer-graph schema, presets, and whole-model graph builder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="graph_cmd", metavar="SUBCOMMAND")
    sub.required = True

    s = sub.add_parser("schema", help="print the JSON schema of a layer graph")
    s.add_argument("--out", help="write to this file instead of stdout")
    s.set_defaults(func=_schema)

    s = sub.add_parser("presets", help="list model shape presets with key dimensions")
    s.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    s.set_defaults(func=_presets)

    s = sub.add_parser("build", help="build the layer graph of a preset model")
    s.add_argument("--model", required=True, help="preset name (see `qesim graph presets`)")
    s.add_argument("--stage", required=True, choices=["prefill", "decode"])
    s.add_argument("--seq-len", type=int, default=128, help="prefill tokens per sequence (default 128)")
    s.add_argument("--context", type=int, default=0, help="tokens already in the KV cache (default 0)")
    s.add_argument("--batch", type=int, default=1, help="sequences (default 1)")
    s.add_argument("--setting", default="W16A16", help="W{w}A{a}, e.g. W4A8 (default W16A16)")
    s.add_argument("--method", default="none", help="adapter structure: none, lqer, aser, qe, ... (default none)")
    s.add_argument("--density", default="1.0", help="weight density of every decoder linear (default 1.0), or per "
                   "linear NAME=D[,NAME=D...] (e.g. q_proj=0.7,k_proj=0.7; the others stay dense)")
    s.add_argument("--group-size", type=int, default=None, help="weights per quantization group (-1 = per output "
                   "channel; default: g128 for weight-only settings, per channel for W-A settings)")
    s.add_argument("--kv-bits", type=int, default=None, help="KV-cache bits (default 16)")
    from qesim.commands.estimate import add_image_args

    add_image_args(s)
    s.add_argument("--out", help="write the graph JSON here instead of stdout")
    s.set_defaults(func=_build)
