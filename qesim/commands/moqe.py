"""``qesim moqe``: MoQE (mixture of quantization experts) on SmolLM2-135M with the pydoc text.

    qesim moqe run [--variants rtn:W4A8 gptq:W4A16 awq:W3A16] [--n-calib 160] [--n-eval 64]
                   [--quant-calib 32] [--out reports] [--hw flightllm-u280]

Quantizes the FP model once per variant (calibration = even pydoc chunks), scores every variant
on calibration and held-out evaluation chunks (odd), trains the router on calibration chunks
only, and writes ``moqe.md`` / ``moqe.csv`` (perplexities: each variant, oracle, MoQE routing per
sequence and per token; footprint; modelled latency overhead on the NPU). Takes minutes.
"""

from __future__ import annotations

import argparse
import time


def register(sub) -> None:
    p = sub.add_parser("moqe", help="MoQE on SmolLM2-135M (real model run)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_subparsers(dest="moqe_cmd", metavar="SUB")
    s.required = True
    r = s.add_parser("run", help="quantize the variants, train the router, write reports")
    r.add_argument("--variants", nargs="+", default=["rtn:W4A8", "gptq:W4A16", "awq:W3A16"],
                   help="method:setting quantization experts")
    r.add_argument("--n-calib", type=int, default=160, help="calibration chunks (router training)")
    r.add_argument("--quant-calib", type=int, default=32, help="of which used to calibrate the quantizers")
    r.add_argument("--n-eval", type=int, default=64, help="held-out evaluation chunks")
    r.add_argument("--seq-len", type=int, default=128)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default="reports")
    r.add_argument("--name", default="moqe", help="report stem: writes NAME.md / NAME.csv under --out")
    r.add_argument("--hw", default="flightllm-u280")
    r.add_argument("--cache-dir", default=None,
                   help="save/reuse each variant's token NLLs here (lets variants be scored by parallel runs)")
    r.add_argument("--score-only", action="store_true",
                   help="only quantize + score the given variants into --cache-dir (no router, no report)")
    r.add_argument("--skip-fp", action="store_true", help="do not score the FP model")
    r.add_argument("--wait-cache", type=float, default=0.0,
                   help="seconds to wait for other runs to write the variants' cache files before scoring them here")
    r.set_defaults(func=run)


def run(args) -> int:
    from qesim.safeio import check_out_dir

    check_out_dir(args.out)  # before the experiment, not after it
    import torch

    from qesim.eval.data import lm_splits
    from qesim.eval.models import load_model
    from qesim.quant.apply import quantize_model
    from qesim.quant.calib import Calibration
    from qesim.quant.moqe import (RouterConfig, footprint_and_latency, per_sequence_results, per_token_results,
                                  ppl_from_nll, sequence_features, token_nll)
    from qesim.quant.primitives import parse_setting

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    t0 = time.time()
    lm = load_model("smollm2-135m", use_cache=False)  # the GGUF model cannot be save_pretrained-cached
    model, tok = lm.model, lm.tokenizer
    cal_ids, ev_ids = lm_splits(tok, args.n_calib, args.n_eval, args.seq_len, args.seed)
    # shuffle calibration chunks (lm_splits returns them sorted) so the router's fit/validation
    # split is not a contiguous block of the text
    g = torch.Generator().manual_seed(args.seed)
    cal_ids = cal_ids[torch.randperm(len(cal_ids), generator=g)]
    print(f"loaded in {lm.load_s:.1f} s; calib {tuple(cal_ids.shape)} eval {tuple(ev_ids.shape)}", flush=True)
    qc = cal_ids[: args.quant_calib]
    calib = None
    variants = []
    for v in args.variants:
        m, st = v.split(":")
        variants.append((f"{m.upper()} {st.upper()}", m.lower(), st.upper()))
    ppl_fp = None
    if not args.skip_fp and not args.score_only:
        ppl_fp = ppl_from_nll(token_nll(model, ev_ids))
        print(f"fp ppl {ppl_fp:.3f}", flush=True)
    cal_n, ev_n, timings = [], [], {}
    from pathlib import Path

    cache = Path(args.cache_dir) if args.cache_dir else None
    key = f"c{args.n_calib}-q{args.quant_calib}-e{args.n_eval}-L{args.seq_len}-s{args.seed}"
    for label, m, st in variants:
        f = cache / f"{m}-{st}-{key}.pt" if cache else None
        t_wait = time.time()
        while f is not None and not f.exists() and time.time() - t_wait < args.wait_cache:
            time.sleep(10)
        if f is not None and f.exists():
            d = torch.load(f)
            cal_n.append(d["cal"])
            ev_n.append(d["ev"])
            timings[label] = tuple(d["timings"])
            print(f"{label}: loaded from {f}", flush=True)
            continue
        t = time.time()
        if calib is None:
            calib = Calibration.build(model, [{"input_ids": qc[i: i + 4]} for i in range(0, len(qc), 4)])
        qm, _ = quantize_model(model, m, parse_setting(st), calib, seed=args.seed)
        tq = time.time() - t
        cal_n.append(token_nll(qm, cal_ids))
        ev_n.append(token_nll(qm, ev_ids))
        timings[label] = (tq, time.time() - t - tq)
        print(f"{label}: quant {tq:.1f} s, scoring {timings[label][1]:.1f} s, eval ppl {ppl_from_nll(ev_n[-1]):.3f}",
              flush=True)
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"cal": cal_n[-1], "ev": ev_n[-1], "timings": list(timings[label])}, f)
        del qm
    if args.score_only:
        return 0
    cal_nll, ev_nll = torch.stack(cal_n), torch.stack(ev_n)  # [V, N, T]
    embed = model.get_input_embeddings()
    labels = [v[0] for v in variants]
    cfg = RouterConfig(seed=args.seed)
    seq_res, seq_router = per_sequence_results(labels, sequence_features(embed, cal_ids), cal_nll,
                                               sequence_features(embed, ev_ids), ev_nll, cfg, ppl_fp=ppl_fp)
    # per-token: the loss at position t predicts token t+1 from inputs <= t; route on the embedding of token t
    tok_res, tok_router = per_token_results(labels, sequence_features(embed, cal_ids[:, :-1], True), cal_nll,
                                            sequence_features(embed, ev_ids[:, :-1], True), ev_nll, cfg, ppl_fp=ppl_fp)
    vs = [(v[0], v[2]) for v in variants]
    cost_seq = footprint_and_latency("smollm2-135m", vs, seq_res.route_share, seq_router.n_params, cfg.hidden,
                                     args.hw, args.seq_len)
    cost_tok = footprint_and_latency("smollm2-135m", vs, tok_res.route_share, tok_router.n_params, cfg.hidden,
                                     args.hw, args.seq_len, per_token=True,
                                     variants_run_per_seq=tok_res.extra["variants_run_per_seq"])
    _write(args, seq_res, tok_res, cost_seq, cost_tok, timings, time.time() - t0,
           dict(cal=tuple(cal_ids.shape), ev=tuple(ev_ids.shape), quant_calib=args.quant_calib))
    return 0


def _write(args, seq, tokr, cost_seq, cost_tok, timings, total_s, sizes) -> None:
    import csv
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [("fp", "W16A16", seq.ppl_fp)] if seq.ppl_fp is not None else []
    rows += [(v, "single", p) for v, p in seq.ppl_single.items()]
    rows += [("oracle", "per-sequence", seq.ppl_oracle), ("moqe", "per-sequence", seq.ppl_routed),
             ("oracle", "per-token", tokr.ppl_oracle), ("moqe", "per-token", tokr.ppl_routed)]
    stem = args.name
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "routing", "eval_ppl"])
        for r in rows:
            w.writerow([r[0], r[1], f"{r[2]:.4f}"])
    best, best_p = seq.best_single
    ok = seq.ppl_routed <= best_p + 1e-9
    mb = lambda b: f"{b / 1e6:.2f} MB"  # noqa: E731
    md = [
        "# MoQE on SmolLM2-135M (pydoc text)",
        "",
        f"Generated by `{_command_line(args)}` (`qesim/commands/moqe.py`, `qesim/quant/moqe.py`). "
        "Regenerate; do not edit.",
        "",
        f"Data: calibration = {sizes['cal'][0]} even pydoc chunks of {sizes['cal'][1]} tokens (the first "
        f"{sizes['quant_calib']} also calibrate the quantizers; the router is fit on 75 % of them and its "
        f"confidence margin tau picked on the other 25 %, then refit on all); evaluation = {sizes['ev'][0]} "
        f"held-out odd chunks, used only for scoring. Perplexity = exp(mean next-token NLL) over all "
        f"evaluation positions. Quantization experts: {', '.join(seq.variants)} (qesim's quantizers, "
        "lm_head and embeddings FP).",
        "",
        "## Perplexity (held-out evaluation chunks)",
        "",
        "| model | routing | eval ppl |",
        "|---|---|---|",
    ]
    md += [f"| {a} | {b} | {c:.3f} |" for a, b, c in rows]
    if seq.ppl_fp is None:
        md += ["", "(The FP model was not scored in this run: `--skip-fp`.)"]
    md += [
        "",
        f"- Best single variant: **{best}** ({best_p:.3f}). MoQE per-sequence routing: **{seq.ppl_routed:.3f}** "
        f"-> acceptance (routed <= best single): **{'holds' if ok else 'DOES NOT HOLD'}**.",
        f"- Oracle gap (per sequence): routed {seq.ppl_routed:.3f} vs oracle {seq.ppl_oracle:.3f} "
        f"({100 * (seq.ppl_routed / seq.ppl_oracle - 1):+.2f} %). Oracle per token: {tokr.ppl_oracle:.3f} "
        "(an upper bound no router reaches: it picks the best variant for every next token).",
        f"- Router choices on eval (per sequence): "
        + ", ".join(f"{k} {100 * v:.0f} %" for k, v in seq.route_share.items())
        + f"; oracle: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in seq.oracle_share.items())
        + f"; agreement with the oracle {100 * seq.router_acc_eval:.0f} %; tau = {seq.tau:.2f}, "
        f"default = {seq.default}."
        + (" With tau = 1 the validation split found no confidence margin at which the router's overrides "
           "beat always running the default, so MoQE runs the default (the best single variant on "
           "calibration) on every sequence: the mean-pooled FP embedding does not predict which variant "
           "wins a sequence here." if seq.tau >= 1.0 else ""),
        f"- Per-token routing: ppl {tokr.ppl_routed:.3f}; a sequence runs on average "
        f"{tokr.extra['variants_run_per_seq']:.2f} variants (every variant picked by one token runs over the "
        "whole sequence).",
        "",
        f"## Cost in the graph (`{cost_seq['hw']}`, prefill of {args.seq_len} tokens)",
        "",
        "| variant | setting | decoder weights | modelled prefill latency |",
        "|---|---|---|---|",
    ]
    md += [f"| {k} | {v['setting']} | {mb(v['decoder_weight_bytes'])} | {v['prefill_latency_s'] * 1e3:.3f} ms |"
           for k, v in cost_seq["variants"].items()]
    md += [
        "",
        f"- Footprint: all variants' quantized decoder weights + one shared fp16 embedding/lm_head "
        f"({mb(cost_seq['shared_fp_embedding_bytes'])}) + router ({cost_seq['router_params']} params, "
        f"{mb(cost_seq['router_bytes'])}) = **{mb(cost_seq['footprint_bytes'])}** (vs "
        f"{mb(min(v['decoder_weight_bytes'] for v in cost_seq['variants'].values()) + cost_seq['shared_fp_embedding_bytes'])} "
        "for the smallest single variant). Weights and metadata bytes as the graph costs them (fp16 scales, "
        "group-128 zero-points for weight-only settings). All variants fit in the U280's HBM, so no "
        "expert loading from host memory is modelled.",
        f"- Per-sequence routing: router latency {cost_seq['router_latency_s'] * 1e6:.2f} us = "
        f"**{cost_seq['router_overhead_pct']:.3f} %** of the expected variant latency "
        f"({cost_seq['expected_variant_latency_s'] * 1e3:.3f} ms at the routed mix); vs always running the "
        f"fastest variant ({cost_seq['fastest_variant']}): {cost_seq['overhead_vs_fastest_pct']:+.2f} %.",
        f"- Per-token routing: router {cost_tok['router_latency_s'] * 1e6:.2f} us, expected latency "
        f"{cost_tok['routed_latency_s'] * 1e3:.3f} ms ({cost_tok['overhead_vs_fastest_pct']:+.2f} % vs the fastest "
        "single variant) because several variants run per sequence.",
        "",
        "## Departures from the paper (stated plainly)",
        "",
        "- Router: a 2-layer MLP on mean-pooled FP token embeddings (per-token: on each token's embedding), "
        "not the paper code's 2-layer transformer encoder + attention block; labels are argmin-loss variants "
        "(the paper's description), not the code's mixture LM loss; no expert fine-tuning; no load-balancing loss.",
        f"- Experts are qesim's fake-quantized copies ({', '.join(seq.variants)}) of the dequantized SmolLM2-135M GGUF "
        "(not Int8 llama.cpp variants); one model, one text corpus (pydoc), one seed.",
        f"- Wall times of this run (whole run and per variant: quantize, score): `{stem}_timing.csv` (kept out "
        "of this text so that a rerun writes the same bytes).",
        "",
    ]
    (out / f"{stem}.md").write_text("\n".join(md))
    with open(out / f"{stem}_timing.csv", "w", newline="") as f:  # wall times: not reproducible
        w = csv.writer(f)
        w.writerow(["variant", "quantize_s", "score_s"])
        for k, (a, b) in timings.items():
            w.writerow([k, f"{a:.1f}", f"{b:.1f}"])
        w.writerow(["(whole run)", "", f"{total_s:.1f}"])
    print(f"wrote {out / f'{stem}.md'}, {out / f'{stem}.csv'} and {out / f'{stem}_timing.csv'}")


def _command_line(args) -> str:
    """The command that reproduces this run (every option, defaults included)."""
    parts = ["qesim moqe run", "--variants " + " ".join(args.variants)]
    for opt in ("n_calib", "quant_calib", "n_eval", "seq_len", "seed", "out", "name", "hw"):
        parts.append(f"--{opt.replace('_', '-')} {getattr(args, opt)}")
    if args.skip_fp:
        parts.append("--skip-fp")
    return " ".join(parts)
