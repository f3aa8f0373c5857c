"""Speed beside accuracy: perplexity (from an accuracy.csv) next to the modelled prefill and
decode speedup of the same method x setting on SmolLM2-135M's layer graph vs its W16A16 graph.

Graphs: ``qesim.graph.builders.build_graph('smollm2-135m', ...)`` with the method's adapter
structure (LQER/ASER: rank-64 shared adapter; QE: 32 shared + 8 routed experts of rank 32, top-1,
touched experts = the builder's uniform-routing expectation, since no exported graph is given);
prefill = 1 x 128 tokens, decode = 1 token over a 128-token context. Latency from the analytical
model ``qesim.perf.model.estimate_graph`` on each hardware preset.
"""

from __future__ import annotations

import csv
from pathlib import Path

HW = ("flightllm-u280", "qe-paper-npu")


def speed_table(acc_rows: list[dict], hw_names=HW, model: str = "smollm2-135m", seq_len: int = 128,
                context: int = 128) -> list[dict]:
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw
    from qesim.perf.model import estimate_graph

    def metric(name):
        return {(r["method"], r["setting"]): float(r["value"]) for r in acc_rows
                if r["metric"] == name and r["model"] == model and not r["method"].startswith("_")}

    ppl, lo, hi = metric("ppl"), metric("ppl_lo"), metric("ppl_hi")
    hws = {h: load_hw(h) for h in hw_names}
    cache: dict = {}

    def lat(hw, stage, setting, method):
        key = (hw, stage, setting, method)
        if key not in cache:
            kw = dict(seq_len=seq_len) if stage == "prefill" else dict(context_len=context)
            g = build_graph(model, stage=stage, setting=setting, method=method, **kw)
            cache[key] = estimate_graph(g, hws[hw]).latency_s
        return cache[key]

    out = []
    for (method, setting), p in sorted(ppl.items()):
        gm = "none" if method == "fp" else ("qe" if method.startswith("qe") else method)
        row = {"method": method, "setting": setting, "ppl": p}
        if (method, setting) in lo and (method, setting) in hi:  # 95 % bootstrap interval (accuracy run)
            row["ppl_lo"], row["ppl_hi"] = lo[(method, setting)], hi[(method, setting)]
        for h in hw_names:
            for stage in ("prefill", "decode"):
                base = lat(h, stage, "W16A16", "none")
                row[f"{h}.{stage}_speedup"] = base / lat(h, stage, setting, gm)
        out.append(row)
    return out


def write_speed_report(acc_csv: Path, out_dir: Path, cmd: str) -> list[Path]:
    rows = list(csv.DictReader(open(acc_csv)))
    table = speed_table(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = list(dict.fromkeys(k for r in table for k in r)) if table else ["method", "setting", "ppl"]
    p_csv = out_dir / "speed_vs_accuracy.csv"
    with open(p_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in table:
            w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()})
    L = ["# SmolLM2-135M: perplexity beside modelled speedup", "",
         f"Produced by: `{cmd}` from `{acc_csv}`.", "",
         "Speedup = latency of the W16A16 graph / latency of the method's graph (analytical model), "
         "prefill 1x128 tokens, decode 1 token at context 128. Perplexity: pydoc held-out chunks "
         "(see accuracy.md). QE routing in these graphs: builder default (uniform expectation). QE and ASER "
         "graphs charge their per-linear input scaling (QE's omega, ASER's smoothing: an SFU eltwise_mul and a "
         "quantize per linear, `docs/quant-deployment.md`); the perplexities are whatever the given accuracy.csv "
         "holds, with its 95 % bootstrap interval over the evaluation chunks where recorded.", "",
         "| method | setting | ppl | " + " | ".join(f"{h} prefill | {h} decode" for h in HW) + " |",
         "|---|---|---|" + "---|---|" * len(HW)]
    for r in table:
        ci = f" [{r['ppl_lo']:.3f}, {r['ppl_hi']:.3f}]" if "ppl_lo" in r else ""
        L.append(f"| {r['method']} | {r['setting']} | {r['ppl']:.3f}{ci} | " +
                 " | ".join(f"{r[f'{h}.prefill_speedup']:.2f}x | {r[f'{h}.decode_speedup']:.2f}x" for h in HW) + " |")
    (out_dir / "speed_vs_accuracy.md").write_text("\n".join(L) + "\n")
    paths = [p_csv, out_dir / "speed_vs_accuracy.md"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2 * len(HW), figsize=(5 * 2 * len(HW), 4.2), sharey=True)
        methods = sorted({r["method"] for r in table})
        markers = {"W16A16": "*", "W4A8": "o", "W4A6": "s", "W3A16": "^"}
        cmap = plt.get_cmap("tab10")
        for j, (h, stage) in enumerate([(h, s) for h in HW for s in ("prefill", "decode")]):
            ax = axes[j]
            for r in table:
                ax.scatter(r[f"{h}.{stage}_speedup"], r["ppl"], color=cmap(methods.index(r["method"]) % 10),
                           marker=markers.get(r["setting"], "x"), s=50)
            ax.set_title(f"{h} {stage}")
            ax.set_xlabel("modelled speedup vs W16A16")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("perplexity (pydoc held-out)")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=cmap(i % 10), marker="o", ls="", label=m) for i, m in enumerate(methods)]
        handles += [Line2D([], [], color="gray", marker=mk, ls="", label=s) for s, mk in markers.items()]
        # beside the panels, not over their points (a legend inside the last panel hid its points)
        fig.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        fig.suptitle("SmolLM2-135M: perplexity vs modelled speedup")
        fig.tight_layout()
        from qesim.report.figures import save_figure

        paths.append(save_figure(fig, out_dir / "speed_vs_accuracy.png", dpi=110, bbox_inches="tight"))
    except ImportError:  # pragma: no cover
        pass
    return paths
