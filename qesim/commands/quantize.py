"""``qesim quantize``: quantize a real small model and export its layer graph.

    qesim quantize --model smollm2-135m --method qe --setting W4A8 --export G.json [--quick]

Calibrates on the even pydoc chunks, quantizes, runs the held-out (odd) chunks once to measure
perplexity (encoders: embedding cosine) and, for QE, the routing statistics (tokens per routed
expert per layer, distinct experts touched per 128-token batch), then writes the graph
(``qesim estimate --model G.json ...`` loads it).
"""

from __future__ import annotations

import argparse
import sys
import time

from qesim.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("quantize", help="quantize a real small model and export its layer graph (torch)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m | minilm-l6")
    p.add_argument("--method", default="qe", help="rtn|smoothquant|awq|gptq|lqer|aser|qe|fp")
    p.add_argument("--setting", default="W4A8")
    p.add_argument("--export", required=True, metavar="G.json", help="where to write the layer graph")
    p.add_argument("--stage", default="prefill", choices=["prefill", "decode"])
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--context", type=int, default=0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny calibration / held-out sets")
    p.add_argument("--calib", type=int, default=None, help="calibration sequences (default 32; quick 4)")
    p.add_argument("--eval", type=int, default=None, dest="n_eval", help="held-out sequences (default 16; quick 4)")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--qe-ablation", default="full")
    p.add_argument("--checkpoint", metavar="FILE.safetensors", default=None,
                   help="also write the quantized model as a real checkpoint (packed integer weights, scales, "
                        "zero points, adapters; layout: qesim/quant/checkpoint.py) and check that reloading it "
                        "reproduces the held-out metric to 1e-6")
    p.set_defaults(func=run)


def run(args) -> int:
    from qesim.safeio import check_out_file

    check_out_file(args.export, "--export")  # before quantizing, not after
    from qesim.quant.methods import ALL_METHODS, is_method
    from qesim.quant.primitives import parse_setting

    if args.method != "fp" and not is_method(args.method):  # built-in or an installed plug-in
        raise InputError(f"--method: unknown {args.method!r}; choose from {', '.join(ALL_METHODS + ['fp'])}")
    try:
        st = parse_setting(args.setting)
    except ValueError as e:
        raise InputError(f"--setting: {e}") from None
    from qesim.eval.models import MODELS, load_model, package_dir

    if args.model not in MODELS:
        raise InputError(f"--model: unknown {args.model!r}; supported: {', '.join(MODELS)}")
    package_dir(args.model)
    if args.method == "qe":
        from qesim.quant.methods.qe_method import available

        ok, why = available()
        if not ok:
            raise InputError(f"--method qe: {why}")
    import torch

    from qesim.eval.data import lm_splits, para_splits
    from qesim.eval.metrics import embed, encoder_batches, perplexity
    from qesim.quant.apply import quantize_model
    from qesim.quant.calib import Calibration
    from qesim.quant.export import export_graph, reset_routing

    torch.set_num_threads(2)
    say = lambda s: print(f"[quantize] {s}", file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    lm = load_model(args.model)
    model = lm.model
    meta: dict = {"command": "qesim quantize " + " ".join(a for a in sys.argv[2:]) if sys.argv[1:2] == ["quantize"]
                  else f"qesim quantize --model {args.model} --method {args.method} --setting {st.name}"}
    if lm.kind == "causal":
        nc, ne = (4, 4) if args.quick else (32, 16)
        cal_ids, ev_ids = lm_splits(lm.tokenizer, args.calib or nc, args.n_eval or ne, 128, args.seed)
        batches = [{"input_ids": cal_ids[i:i + 4]} for i in range(0, len(cal_ids), 4)]
    else:
        nc, ne = (16, 16) if args.quick else (64, 128)
        cal_txt, ev_txt = para_splits(args.calib or nc, args.n_eval or ne, args.seed)
        batches = encoder_batches(lm.tokenizer, cal_txt, batch_size=16)
        ev_batches = encoder_batches(lm.tokenizer, ev_txt)
    if args.method == "fp" or st.name == "W16A16":
        qm, method = model, "fp"
    else:
        calib = Calibration.build(model, batches)
        opts = dict(rank=args.rank, seed=args.seed, qe_ablation=args.qe_ablation)
        if lm.kind == "causal":
            opts.update(awq_batches=1, awq_seqs=2)
        qm, rep = quantize_model(model, args.method, st, calib, **opts)
        method = args.method
        for line in rep["log"]:
            say(line)
    reset_routing(qm)
    if lm.kind == "causal":
        ppl = perplexity(qm, ev_ids)
        meta.update(ppl=round(ppl, 4), routing_measured_on=f"{ev_ids.numel()} held-out pydoc tokens (odd chunks)")
        say(f"{method} {st.name}: held-out ppl {ppl:.3f}")
    else:
        ref = embed(model, ev_batches)
        cos = float((embed(qm, ev_batches) * ref).sum(-1).mean())
        meta.update(cos_mean=round(cos, 5), routing_measured_on=f"{len(ev_txt)} held-out pydoc paragraphs")
        say(f"{method} {st.name}: held-out embedding cosine {cos:.4f}")
    if args.checkpoint:
        if method == "fp":
            raise InputError("--checkpoint: nothing to pack for the fp model (choose a method and a quantized setting)")
        import copy
        import math

        from qesim.quant.checkpoint import load_checkpoint, save_checkpoint

        ck = save_checkpoint(qm, args.checkpoint, setting=st, method=method)
        back = load_checkpoint(ck, copy.deepcopy(model))
        if lm.kind == "causal":
            again = perplexity(back, ev_ids)
            same = math.isclose(again, ppl, rel_tol=1e-6)
        else:
            again = float((embed(back, ev_batches) * ref).sum(-1).mean())
            same = math.isclose(again, cos, rel_tol=1e-6)
        say(f"wrote checkpoint {ck} ({ck.stat().st_size / 2**20:.1f} MiB); reloaded metric {again:.6g} "
            f"({'matches' if same else 'DIFFERS FROM'} the fake-quant model)")
        if not same:
            return 1
    g = export_graph(qm, method=method, setting=st.name if method != "fp" else "W16A16", name=args.model,
                     stage=args.stage, seq_len=args.seq_len, context_len=args.context, batch=args.batch, meta=meta)
    g.to_json(args.export)
    say(f"wrote {args.export} ({len(g.ops)} ops) in {time.time() - t0:.0f} s")
    return 0
