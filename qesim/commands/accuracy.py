"""``qesim accuracy``: quantize a real small model with several methods x settings and measure.

    qesim accuracy --model smollm2-135m --methods rtn,smoothquant,awq,gptq,lqer,aser,qe \\
                   --settings W4A6,W4A8,W3A16 --out reports/ [--ablation] [--quick]

Writes ``OUT/accuracy.csv`` (columns ``model,method,setting,metric,value``; perplexity with its
95 % bootstrap interval ``ppl_lo``/``ppl_hi``), ``OUT/accuracy.md`` (tables, the command line,
sizes and notes) and, for smollm2-135m, ``OUT/speed_vs_accuracy.{csv,md,png}`` (the same
perplexities beside the modelled speedups). Wall/CPU times go to ``OUT/accuracy_timing.csv``
(same columns; ``_run`` rows for the whole run), not into the report, so a rerun rewrites
accuracy.md/.csv byte-identically. ``--quiet`` silences the progress bars and messages only.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
from pathlib import Path

from qesim.errors import InputError

DEFAULT_METHODS = "rtn,smoothquant,awq,gptq,lqer,aser,qe"
DEFAULT_SETTINGS = "W4A6,W4A8,W3A16"


def register(sub) -> None:
    p = sub.add_parser("accuracy", help="accuracy of quantization methods on a real small model (torch)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m | minilm-l6")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma list (default {DEFAULT_METHODS})")
    p.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"comma list of W<b>A<b> (default {DEFAULT_SETTINGS})")
    p.add_argument("--out", default="reports", help="output directory (default reports/)")
    p.add_argument("--quick", action="store_true", help="tiny calibration/evaluation sets (tests)")
    p.add_argument("--calib", type=int, default=None, help="calibration sequences/paragraphs (default 32 / 64)")
    p.add_argument("--eval", type=int, default=None, dest="n_eval", help="evaluation sequences/paragraphs (default 16 / 128)")
    p.add_argument("--rank", type=int, default=64, help="total low-rank budget of LQER/ASER/QE (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ablation", action="store_true", help="also run the QE ablation (paper Table 4) at --ablation-setting")
    p.add_argument("--ablation-setting", default="W4A8")
    p.add_argument("--sequential", choices=["on", "off"], default=None,
                   help="calibrate block i+1 on the quantized blocks' outputs (on) or on FP inputs (off) for "
                        "every method; default: each method's reference (GPTQ on, the others off)")
    p.add_argument("--qe-refine", action="store_true", help="QE: run the routed-expert refinement (Sec. 7.2)")
    p.add_argument("--qe-max-tokens", type=int, default=None, help="QE: cap calibration tokens per linear")
    p.add_argument("--speed-from", metavar="CSV", default=None,
                   help="do not run: write OUT/speed_vs_accuracy.{csv,md,png} from an existing accuracy.csv")
    p.add_argument("--merge", metavar="CSV,CSV", default=None,
                   help="do not run: merge accuracy.csv files of separate runs (same model, calibration and "
                        "evaluation sets) into OUT/accuracy.{csv,md}; the first file wins on duplicates")
    p.add_argument("--pareto", action="store_true",
                   help="do not run the grid: write OUT/quant_pareto.{md,csv,png}, the budget-matched comparison "
                        "(rank sweeps of LQER/ASER/QE + plain methods, intervals, modelled latency on every preset)")
    p.add_argument("--pareto-models", default="smollm2-135m,minilm-l6",
                   help="models of --pareto (default smollm2-135m,minilm-l6)")
    p.add_argument("--pareto-setting", default="W4A8", help="setting of --pareto (default W4A8)")
    p.add_argument("--pareto-grid", choices=["default", "small", "large"], default="default",
                   help="--pareto budget grid: default (RTN/GPTQ/AWQ, LQER/ASER ranks 64/128/288, QE 32+4x32 and 32+8x32; "
                        "64 pydoc + 16 licence chunks; ~30 min), small (RTN, ranks 64/288, QE 16+8x16 and 32+8x32; "
                        "a cost estimate) or large (ranks 16/32/64/288, QE 16+8x16, 32+2x32, 32+4x32, 32+8x32; "
                        "64 + 32 chunks)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of --pareto / --ablation-seeds (default 2)")
    p.add_argument("--jobs", type=int, default=2,
                   help="--pareto: processes for the fits and evaluations, forked after the calibration capture, "
                        "--threads shared among them (default 2: the two cores; 1 = in this process)")
    p.add_argument("--ablation-seeds", metavar="S,S,...", default=None,
                   help="do not run the grid: QE ablation at the full rank budget (--rank, default 64) over these "
                        "calibration seeds, paired intervals; writes OUT/qe_ablation.{md,csv} (causal model only)")
    p.add_argument("--ablation-variants", metavar="V,V,...", default=None,
                   help="variants of --ablation-seeds (default full,se_only,re_only,se_random_routing,"
                        "se_random_clustering; full is always run: the others are compared with it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars / progress messages (outputs are the same)")
    p.set_defaults(func=run)


def _split(s: str, what: str = "list") -> list[str]:
    """A comma-separated list; an empty list or an empty entry (``rtn,,qe``) is an error, not skipped."""
    items = [x.strip() for x in str(s).split(",")]
    if not any(items) or not all(items):
        raise InputError(f"--{what}: {s!r} has an empty entry (a comma-separated list, e.g. rtn,lqer,qe)")
    return items


ACCURACY_COLUMNS = ("model", "method", "setting", "metric", "value")
#: wall/CPU-time metrics: written to accuracy_timing.csv, never into accuracy.csv/.md (reruns byte-identical)
TIMING_METRICS = frozenset({"quant_s", "eval_s", "quant_cpu_s", "eval_cpu_s"})


def _is_timing(method: str, metric: str) -> bool:
    return method == "_run" or metric in TIMING_METRICS


def _write_rows(path: Path, rows: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(ACCURACY_COLUMNS))
        for r in rows:
            w.writerow([r[0], r[1], r[2], r[3], f"{r[4]:.6g}" if isinstance(r[4], float) else r[4]])
    tmp.replace(path)


def check_accuracy_csv(src: Path, flag: str) -> None:
    """An accuracy.csv to read: readable text with the columns ``model,method,setting,metric,value``
    and numeric values; InputError naming the flag, file and what is missing."""
    from qesim.safeio import read_text

    if not src.exists():
        raise InputError(f"{flag}: {src} not found")
    rows = list(csv.DictReader(read_text(src, "accuracy CSV").splitlines()))
    if not rows:
        raise InputError(f"{flag} {src}: no rows (expected the columns {','.join(ACCURACY_COLUMNS)})")
    missing = [c for c in ACCURACY_COLUMNS if c not in rows[0]]
    if missing:
        raise InputError(f"{flag} {src}: missing column(s) {', '.join(missing)}; an accuracy CSV has "
                         f"{','.join(ACCURACY_COLUMNS)} (written by `qesim accuracy`)")
    for i, r in enumerate(rows, start=2):
        try:
            float(r["value"])
        except (TypeError, ValueError):
            raise InputError(f"{flag} {src}: line {i}: value {r['value']!r} is not a number") from None


def run(args) -> int:
    from qesim.safeio import check_out_dir

    if args.speed_from:
        from qesim.eval.speed import write_speed_report

        src = Path(args.speed_from)
        check_accuracy_csv(src, "--speed-from")
        check_out_dir(args.out)
        paths = write_speed_report(src, Path(args.out), f"qesim accuracy --speed-from {src} --out {args.out}")
        print("wrote " + ", ".join(map(str, paths)), file=sys.stderr)
        return 0
    if args.merge:
        for src in _split(args.merge, "merge"):
            check_accuracy_csv(Path(src), "--merge")
        check_out_dir(args.out)
        return _merge(args)
    check_out_dir(args.out)  # before quantizing, not after
    if args.pareto:
        return _pareto(args)
    if args.ablation_seeds:
        return _ablation_seeds(args)
    from qesim.quant.methods import ALL_METHODS, is_method
    from qesim.quant.primitives import parse_setting

    methods = _split(args.methods, "methods")
    bad = [m for m in methods if not is_method(m)]  # built-in or an installed plug-in quantizer
    if bad:
        raise InputError(f"--methods: unknown {', '.join(bad)}; choose from {', '.join(ALL_METHODS)}")
    settings = _split(args.settings, "settings")
    for s in settings + [args.ablation_setting]:
        try:
            parse_setting(s)
        except ValueError as e:
            raise InputError(f"--settings: {e}") from None
    settings = [parse_setting(s).name for s in settings]
    from qesim.eval.models import MODELS, package_dir

    if args.model not in MODELS:
        raise InputError(f"--model: unknown {args.model!r}; accuracy runs support {', '.join(MODELS)}")
    package_dir(args.model)  # clear error if the package is missing

    from qesim.eval.runner import RunConfig, run_accuracy

    opts = {}
    if args.qe_refine:
        opts["qe_refine"] = True
    if args.qe_max_tokens:
        opts["qe_max_tokens"] = args.qe_max_tokens
    cfg = RunConfig(model=args.model, methods=methods, settings=settings, quick=args.quick, n_calib=args.calib,
                    n_eval=args.n_eval, seed=args.seed, rank=args.rank, ablation=args.ablation,
                    ablation_setting=parse_setting(args.ablation_setting).name, sequential=None if args.sequential is None else args.sequential == "on",
                    opts=opts, quiet=args.quiet)
    say = (lambda s: None) if args.quiet else (lambda s: print(f"[accuracy] {s}", file=sys.stderr, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "qesim accuracy " + _argline(args)

    def write(res) -> None:
        _write_rows(out / "accuracy.csv", [r for r in res.rows if not _is_timing(r[1], r[3])])
        _write_rows(out / "accuracy_timing.csv", [r for r in res.rows if _is_timing(r[1], r[3])]
                    + [(args.model, "_run", "-", k, v) for k, v in res.timings.items()])
        (out / "accuracy.md").write_text(render_markdown(cfg, res, cmd))

    res = run_accuracy(cfg, progress=say, checkpoint=write)
    write(res)
    paths = [out / "accuracy.csv", out / "accuracy.md", out / "accuracy_timing.csv"]
    if args.model == "smollm2-135m":  # the speed-beside-accuracy table of the same run (one command)
        from qesim.eval.speed import write_speed_report

        paths += write_speed_report(out / "accuracy.csv", out, f"{cmd} (speed table from its accuracy.csv)")
    print("wrote " + ", ".join(map(str, paths)) + f" (total {res.timings.get('total_s', 0):.0f} s)", file=sys.stderr)
    return 0


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished child processes (the
    forked --jobs workers)."""
    import os

    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _pareto(args) -> int:
    from qesim.eval.models import MODELS, package_dir
    from qesim.quant.primitives import parse_setting

    if args.jobs < 1 or args.threads < 1:
        raise InputError(f"--jobs ({args.jobs}) and --threads ({args.threads}) must be >= 1")
    models = _split(args.pareto_models)
    for m in models:
        if m not in MODELS:
            raise InputError(f"--pareto-models: unknown {m!r}; accuracy runs support {', '.join(MODELS)}")
        package_dir(m)
    try:
        setting = parse_setting(args.pareto_setting).name
    except ValueError as e:
        raise InputError(f"--pareto-setting: {e}") from None
    from qesim.eval.pareto import ParetoConfig, run_pareto
    from qesim.report.quant_pareto import write_pareto_report

    say = (lambda s: None) if args.quiet else (lambda s: print(f"[pareto] {s}", file=sys.stderr, flush=True))
    t0, c0 = time.time(), _cpu_s()
    results = []
    for m in models:
        enc = MODELS[m]["kind"] == "encoder"
        if args.quick:
            cfg = ParetoConfig.quick(m)
        else:
            cfg = {"small": ParetoConfig.small, "large": ParetoConfig.large}.get(args.pareto_grid, ParetoConfig)(model=m)
        cfg.threads = max(1, args.threads)
        cfg.jobs = args.jobs  # checked >= 1 above
        cfg.quiet = args.quiet
        if enc and not args.quick:  # paragraphs instead of 128-token chunks
            cfg.n_calib, cfg.n_eval, cfg.n_ood = 64, 128, 2 * cfg.n_ood
        cfg.setting = setting
        cfg.seed = args.seed
        results.append(run_pareto(cfg, progress=say))
    cmd = "qesim accuracy --pareto" + (" --quick" if args.quick else "") + f" --out {args.out}"
    if args.pareto_models != "smollm2-135m,minilm-l6":
        cmd += f" --pareto-models {args.pareto_models}"
    if setting != "W4A8":
        cmd += f" --pareto-setting {setting}"
    if args.pareto_grid != "default":
        cmd += f" --pareto-grid {args.pareto_grid}"
    if args.threads != 2:
        cmd += f" --threads {args.threads}"
    if args.jobs != 2:
        cmd += f" --jobs {args.jobs}"
    paths = write_pareto_report(results, Path(args.out), cmd, time.time() - t0, _cpu_s() - c0)
    say("wrote " + ", ".join(map(str, paths)) + f" in {time.time() - t0:.0f} s")
    return 0


def _ablation_seeds(args) -> int:
    from qesim.eval.models import MODELS, package_dir
    from qesim.quant.primitives import parse_setting

    try:
        seeds = tuple(int(x) for x in _split(args.ablation_seeds))
    except ValueError:
        raise InputError(f"--ablation-seeds: {args.ablation_seeds!r} is not a comma list of integers") from None
    if not seeds or args.model not in MODELS or MODELS[args.model]["kind"] != "causal":
        raise InputError(f"--ablation-seeds: needs seeds and a causal --model ({args.model!r} given)")
    if args.rank < 2:
        raise InputError("--rank: the ablation needs a total rank >= 2")
    try:
        setting = parse_setting(args.ablation_setting).name
    except ValueError as e:
        raise InputError(f"--ablation-setting: {e}") from None
    package_dir(args.model)
    from qesim.eval.ablation import VARIANTS, AblationConfig, run_ablation, write_ablation_report

    variants = VARIANTS
    if args.ablation_variants:
        asked = _split(args.ablation_variants, "ablation-variants")
        bad = [v for v in asked if v not in VARIANTS]
        if bad:
            raise InputError(f"--ablation-variants: unknown {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
        variants = tuple(v for v in VARIANTS if v == "full" or v in asked)

    cfg = AblationConfig(model=args.model, setting=setting, seeds=seeds, rank=args.rank, threads=max(1, args.threads),
                         quiet=args.quiet, variants=variants)
    if args.quick:
        cfg.n_calib, cfg.n_eval = 4, 8
    if args.calib:
        cfg.n_calib = args.calib
    if args.n_eval:
        cfg.n_eval = args.n_eval
    say = (lambda s: None) if args.quiet else (lambda s: print(f"[ablation] {s}", file=sys.stderr, flush=True))
    t0, c0 = time.time(), time.process_time()
    res = run_ablation(cfg, progress=say)
    cmd = f"qesim accuracy --ablation-seeds {','.join(map(str, seeds))} --model {args.model} --out {args.out}"
    if args.quick:
        cmd += " --quick"
    if args.rank != 64:
        cmd += f" --rank {args.rank}"
    if args.calib:
        cmd += f" --calib {args.calib}"
    if args.n_eval:
        cmd += f" --eval {args.n_eval}"
    if args.ablation_variants:
        cmd += f" --ablation-variants {','.join(variants)}"
    if args.threads != 2:
        cmd += f" --threads {args.threads}"
    paths = write_ablation_report(res, Path(args.out), cmd, time.time() - t0, time.process_time() - c0)
    say("wrote " + ", ".join(map(str, paths)))
    return 0


def _merge(args) -> int:
    from qesim.eval.runner import RunConfig, RunResult

    srcs = [Path(x) for x in _split(args.merge, "merge")]
    seen, rows, notes = set(), [], []
    order_m, order_s = [], []
    for src in srcs:
        if not src.exists():
            raise InputError(f"--merge: {src} not found")
        for r in csv.DictReader(open(src)):
            m, s = r["method"], r["setting"]
            if m == "_run":
                m, s = "_run", str(src.parent.name)
            key = (r["model"], m, s, r["metric"])
            if key in seen:
                continue
            seen.add(key)
            rows.append((r["model"], m, s, r["metric"], float(r["value"])))
            if m not in ("_run", "fp") and m not in order_m:
                order_m.append(m)
            if m not in ("_run", "fp") and s not in order_s:
                order_s.append(s)
        notes.append(f"merged from {src}")
        md = src.with_suffix(".md")
        if md.exists():
            txt = md.read_text()
            for line in txt.splitlines():
                if line.startswith("Produced by:") or line.startswith("Calibration/evaluation:"):
                    notes.append(f"{src.parent.name}: {line}")
                if line.startswith("- ") and ("FAILED" in line or "skipped" in line or "fallback" in line):
                    notes.append(f"{src.parent.name}: {line[2:]}")
    models = {r[0] for r in rows}
    if len(models) != 1:
        raise InputError(f"--merge: files hold {len(models)} models ({', '.join(sorted(models))}); need one")
    pref = ["rtn", "smoothquant", "awq", "gptq", "lqer", "aser", "qe"]
    order_m.sort(key=lambda m: (pref.index(m) if m in pref else len(pref), m))
    s_pref = ["W4A6", "W4A8", "W3A16"]
    order_s.sort(key=lambda s: (s_pref.index(s) if s in s_pref else len(s_pref), s))
    qe_variants = [m for m in order_m if m.startswith("qe[")]
    cfg = RunConfig(model=models.pop(), methods=[m for m in order_m if not m.startswith("qe[")], settings=order_s,
                    ablation=bool(qe_variants))
    res = RunResult(rows=[r for r in rows if r[1] != "_run"], notes=notes)
    res.info = {"runs": len(srcs)}
    for r in rows:
        if r[1] == "_run":
            res.timings[f"{r[2]}.{r[3]}"] = r[4]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_rows(out / "accuracy.csv", [r for r in rows if not _is_timing(r[1], r[3])])
    timing = [r for r in rows if _is_timing(r[1], r[3])]
    for src in srcs:  # the sources' own timing files, if they were written by this version
        tsrc = src.with_name("accuracy_timing.csv")
        if tsrc.exists():
            timing += [(r["model"], r["method"], r["setting"] if r["method"] != "_run" else src.parent.name,
                        r["metric"], float(r["value"])) for r in csv.DictReader(open(tsrc))]
    _write_rows(out / "accuracy_timing.csv", timing)
    (out / "accuracy.md").write_text(render_markdown(cfg, res, f"qesim accuracy --merge {args.merge} --out {args.out}"))
    print(f"wrote {out / 'accuracy.csv'} and {out / 'accuracy.md'}", file=sys.stderr)
    return 0


def _argline(args) -> str:
    parts = [f"--model {args.model}", f"--methods {args.methods}", f"--settings {args.settings}", f"--out {args.out}"]
    if args.quick:
        parts.append("--quick")
    if args.ablation:
        parts.append("--ablation")
    if args.calib:
        parts.append(f"--calib {args.calib}")
    if args.n_eval:
        parts.append(f"--eval {args.n_eval}")
    if args.rank != 64:
        parts.append(f"--rank {args.rank}")
    return " ".join(parts)


def _with_ci(vals: dict, m: str, s: str, k: str) -> str:
    """``value [lo, hi]`` when the run recorded the interval (``<k>_lo`` / ``<k>_hi``), else the value."""
    v = vals[(m, s, k)]
    lo, hi = vals.get((m, s, f"{k}_lo")), vals.get((m, s, f"{k}_hi"))
    if lo is None or hi is None:
        return f"{v:.4g}"
    return f"{v:.4g} [{lo:.4g}, {hi:.4g}]"


def _seq_text(seq) -> str:
    if seq is None:
        return "each method's reference default (GPTQ sequential: quantized blocks propagate; the others FP inputs at every block)"
    return "sequential (quantized blocks propagate)" if seq else "FP inputs at every block (non-sequential)"


def render_markdown(cfg, res, cmd: str) -> str:
    from qesim.eval.runner import ABLATION_LABELS

    vals: dict[tuple, float] = {(m, s, k): v for (_, m, s, k, v) in res.rows}
    primary = "ppl" if any(k == "ppl" for (_, _, k) in vals) else "cos_mean"
    better = "lower is better" if primary == "ppl" else "higher is better"
    L = [f"# Accuracy: {cfg.model}", "", f"Produced by: `{cmd}`. Wall/CPU times per method: `accuracy_timing.csv` "
         "beside this file (kept out of it so a rerun rewrites this report byte-identically).", ""]
    L.append(f"Calibration/evaluation: {res.info}. Low-rank budget (LQER/ASER/QE total rank): {cfg.rank}. "
             f"Calibration inputs: {_seq_text(cfg.sequential)}. "
             f"Seed {cfg.seed}.")
    L.append("")
    fpv = vals.get(("fp", "W16A16", primary))
    L.append(f"## {primary} ({better}); fp32 reference = {_with_ci(vals, 'fp', 'W16A16', primary)}"
             if fpv is not None else f"## {primary}")
    L.append("")
    L.append("Brackets: 95 % bootstrap interval over the evaluation chunks (paragraphs), 2000 resamples "
             "(`qesim/eval/stats.py`); a run written before intervals were recorded shows none.")
    L.append("")
    methods = [m for m in cfg.methods if any(k[0] == m for k in vals)]
    L.append("| method | " + " | ".join(cfg.settings) + " |")
    L.append("|---|" + "---|" * len(cfg.settings))
    for m in methods:
        cells = []
        for s in cfg.settings:
            v = vals.get((m, s, primary))
            extra = "" if primary == "ppl" or (m, s, "cos_min") not in vals else f" (min {vals[(m, s, 'cos_min')]:.3f})"
            cells.append("—" if v is None else f"{_with_ci(vals, m, s, primary)}{extra}")
        L.append(f"| {m} | " + " | ".join(cells) + " |")
    L += ["", "## Mean per-block relative output error on held-out tokens", "",
          "err_i = ||f_q(x) - f(x)|| / ||f(x) - x|| with FP inputs x at every block, averaged over blocks (max in brackets).", ""]
    L.append("| method | " + " | ".join(cfg.settings) + " |")
    L.append("|---|" + "---|" * len(cfg.settings))
    for m in methods:
        cells = []
        for s in cfg.settings:
            v = vals.get((m, s, "block_rel_err_mean"))
            mx = vals.get((m, s, "block_rel_err_max"))
            cells.append("—" if v is None else f"{v:.4f} ({mx:.3f})")
        L.append(f"| {m} | " + " | ".join(cells) + " |")
    abl = [(a, lbl) for a, lbl in ABLATION_LABELS.items()
           if (f"qe[{a}]", cfg.ablation_setting, primary) in vals or (a == "full" and ("qe", cfg.ablation_setting, primary) in vals)]
    if cfg.ablation and abl:
        L += ["", f"## QE ablation at {cfg.ablation_setting} (paper Table 4 structure)", "",
              f"| variant | {primary} | block err mean |", "|---|---|---|"]
        for a, lbl in abl:
            key = f"qe[{a}]" if (f"qe[{a}]", cfg.ablation_setting, primary) in vals else "qe"
            L.append(f"| {lbl} | {_with_ci(vals, key, cfg.ablation_setting, primary)} | "
                     f"{vals.get((key, cfg.ablation_setting, 'block_rel_err_mean'), float('nan')):.4f} |")
    L += ["", "## Remaining deviations from the reference implementations", ""]
    from qesim.report.quant_pareto import DEVIATIONS

    L += [f"- {d}" for d in DEVIATIONS]
    if res.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    return "\n".join(L) + "\n"
