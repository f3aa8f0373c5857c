"""Figures for design-space exploration and the HTML report (matplotlib, Agg backend, PNG).

Each function takes data (or a hardware config) and a path, writes one PNG and returns the path.
Units on every axis label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from qesim.hw.config import HardwareConfig  # noqa: E402

MiB = 2.0**20


def _save(fig, path: Path) -> Path:
    from qesim.report.figures import save_figure

    return save_figure(fig, path, dpi=110, bbox_inches="tight")


#: label offsets tried in order (points), nearest first
_OFFSETS = [(4, 3), (4, -10), (-4, 3), (-4, -10), (0, 9), (0, -14), (10, 12), (10, -18), (-10, 12), (-10, -18),
            (18, 0), (-18, 0), (16, 22), (16, -28), (-16, 22), (-16, -28), (30, 8), (-30, 8), (30, -14), (-30, -14)]


def label_points(ax, xs, ys, labels, fontsize: float = 7, merge_px: float = 9.0, max_names: int = 4) -> int:
    """Direct labelling without overlaps: points closer than ``merge_px`` pixels share one label
    ("q_proj, k_proj, v_proj"); each label takes the first of a fixed list of offsets where its
    box overlaps no label placed before (a thin leader line when it sits away from its point).
    Deterministic. Call after the axes' scales and limits are final. Returns the labels drawn."""
    import numpy as np

    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    disp = ax.transData.transform(np.column_stack([xs, ys])[ok]) if ok.any() else np.zeros((0, 2))
    groups: list[list] = []  # [display x, display y, data x, data y, names]
    for (px, py), x, y, lab in zip(disp, xs[ok], ys[ok], [lb for lb, k in zip(labels, ok) if k]):
        for g in groups:
            if (g[0] - px) ** 2 + (g[1] - py) ** 2 < merge_px ** 2:
                if lab not in g[4]:
                    g[4].append(lab)
                break
        else:
            groups.append([px, py, x, y, [lab]])
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    def text_box(t):  # the text alone (an Annotation's own extent includes its leader line)
        t.update_positions(renderer)
        return Text.get_window_extent(t, renderer)

    r = 4.0 * fig.dpi / 72  # the markers are obstacles too
    placed = [Bbox([[px - r, py - r], [px + r, py + r]]) for px, py in disp]
    for _, _, x, y, names in groups:
        text = ", ".join(names[:max_names]) + (f" +{len(names) - max_names}" if len(names) > max_names else "")
        best = None
        for dx, dy in _OFFSETS:
            far = abs(dx) + abs(dy) > 14
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top",
                            arrowprops=dict(arrowstyle="-", lw=0.4, color="0.55") if far else None, zorder=4)
            bb = text_box(t).expanded(1.04, 1.15)
            if not any(bb.overlaps(p) for p in placed):
                best = (t, bb)
                break
            t.remove()
        if best is None:  # every offset collides: the first one, accepted
            dx, dy = _OFFSETS[0]
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, zorder=4)
            best = (t, text_box(t))
        placed.append(best[1])
    return len(groups)


def _wl_label(r) -> str:
    stage = r["stage"]
    what = f"s={r['seq_len']}" if stage == "prefill" else f"ctx={r['context_len']}"
    m = "" if r["method"] == "none" else f"+{r['method']}"
    return f"{r['model']} {stage} {what} {r['setting']}{m}"


# ----------------------------------------------------------------------------- sweeps
def pareto_plot(df: pd.DataFrame, path: Path, max_panels: int = 4,
                workloads: Optional[Sequence[dict]] = None) -> Path:
    """Latency vs on-chip SRAM, coloured by MPE size, one panel per workload; points on the
    latency/SRAM/MPE-size Pareto front are ringed, the latency/SRAM front is drawn as a step line."""
    from qesim.dse.pareto import pareto_front
    from qesim.dse.space import WORKLOAD_FIELDS

    groups = list(df.groupby(list(WORKLOAD_FIELDS), sort=False))
    if workloads:
        want = [tuple(w[k] for k in WORKLOAD_FIELDS) for w in workloads]
        groups = [g for g in groups if g[0] in want]
    else:  # prefer quantized workloads with adapters, both stages
        groups.sort(key=lambda g: (g[1]["setting"].iloc[0] == "W16A16", g[1]["method"].iloc[0] == "none"))
    groups = groups[:max_panels]
    n = max(1, len(groups))
    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False, layout="constrained")
    vmin = float(df["mpe_macs_per_cycle"].min())
    vmax = float(df["mpe_macs_per_cycle"].max())
    norm = LogNorm(vmin=vmin, vmax=vmax if vmax > vmin else vmin * 1.0001)
    sc = None
    for ax, (_, g) in zip(axes.ravel(), groups):
        x = g["sram_bytes"] / MiB
        y = g["latency_s"] * 1e3
        sc = ax.scatter(x, y, c=g["mpe_macs_per_cycle"], cmap="viridis", norm=norm, s=22, alpha=0.8)
        f3 = pareto_front(g, {"latency_s": "min", "sram_bytes": "min", "mpe_macs_per_cycle": "min"})
        ax.scatter(f3["sram_bytes"] / MiB, f3["latency_s"] * 1e3, facecolors="none", edgecolors="crimson",
                   s=70, linewidths=1.2, label=f"front: latency/SRAM/MPE ({len(f3)})")
        f2 = pareto_front(g, {"latency_s": "min", "sram_bytes": "min"}).sort_values("sram_bytes")
        ax.step(f2["sram_bytes"] / MiB, f2["latency_s"] * 1e3, where="post", color="crimson", lw=1,
                label=f"front: latency/SRAM ({len(f2)})")
        ax.set_yscale("log")
        ax.set_xlabel("on-chip SRAM (weight + act + out + adapter buffers), MiB")
        ax.set_ylabel("latency per pass, ms")
        ax.set_title(_wl_label(g.iloc[0]), fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    if sc is not None:
        cb = fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.6)
        cb.set_label("MPE size: peak mm MAC/cycle")
    fig.suptitle(f"Design space on {df['hw'].iloc[0]}: latency vs SRAM vs MPE size ({len(df)} points)")
    return _save(fig, path)


def sweep_sensitivity_plot(df: pd.DataFrame, axes_cols: Sequence[str], path: Path) -> Path:
    """Median speedup vs W16A16 against each swept hardware axis, one line per quantized workload."""
    q = df[df["setting"] != "W16A16"]
    cols = [c for c in axes_cols if c in df.columns and df[c].nunique() > 1]
    n = max(1, len(cols))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False, layout="constrained")
    for ax, c in zip(axes.ravel(), cols):
        for (st, s, m), g in q.groupby(["stage", "setting", "method"], sort=False):
            med = g.groupby(c)["speedup"].median()
            ax.plot(med.index.astype(float), med.values, marker="o", label=f"{st} {s}{'' if m == 'none' else '+' + m}")
        ax.set_xlabel(c)
        ax.set_xscale("log")
        vals = sorted(float(v) for v in q[c].unique())
        if len(vals) <= 8:
            ax.minorticks_off()
            ax.set_xticks(vals, [f"{v / MiB:g} MiB" if c.endswith("_bytes") and v >= MiB / 4 else f"{v:g}"
                                 for v in vals], fontsize=7)
        ax.set_ylabel("median speedup vs W16A16")
        ax.grid(True, alpha=0.3)
    if cols:
        axes.ravel()[0].legend(fontsize=7)
    fig.suptitle("Speedup over fp16 against each swept axis (median over the other axes)")
    return _save(fig, path)


# ----------------------------------------------------------------------------- quantizers
def accuracy_speed_plot(table: pd.DataFrame, metric: str, speed_col: str, path: Path,
                        lower_is_better: bool = True) -> Path:
    """One point per (method, setting): accuracy metric against speedup over fp16."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    settings = list(dict.fromkeys(table["setting"]))
    markers = "osD^v<>p*h"
    for i, s in enumerate(settings):
        g = table[table["setting"] == s]
        ax.scatter(g[speed_col], g[metric], marker=markers[i % len(markers)], s=50, label=s)
    ax.set_xlabel(f"{speed_col.replace('_', ' ')} (x over W16A16)")
    ax.set_ylabel(f"{metric} ({'lower' if lower_is_better else 'higher'} is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(title="setting", fontsize=8)
    ax.margins(0.12)
    label_points(ax, table[speed_col], table[metric], [str(m) for m in table["method"]])
    ax.set_title("Quantizers: accuracy vs speed")
    return _save(fig, path)


# ----------------------------------------------------------------------------- per-op views
def roofline_plot(graphs: Sequence, hw: HardwareConfig, path: Path) -> Path:
    """Per-op roofline: achieved MAC/cycle against arithmetic intensity (MAC per off-chip byte),
    one panel per graph, with the HBM roof and the MPE peaks (16-bit and 8-bit, mm and mv)."""
    from qesim.perf.model import estimate_graph

    n = len(graphs)
    fig, axes = plt.subplots(1, n, figsize=(6.2 * n, 4.6), squeeze=False)
    bpc = hw.bytes_per_cycle("hbm")
    for ax, g in zip(axes.ravel(), graphs):
        est = estimate_graph(g, hw)
        ops = est.ops[(est.ops["macs"] > 0)].copy()
        ai_on = ops["bytes"] <= 0
        ops["ai"] = ops["macs"] / ops["bytes"].where(ops["bytes"] > 0, np.nan)
        ops["perf"] = ops["macs"] / ops["cycles"]
        lo = float(np.nanmin(ops["ai"])) if ops["ai"].notna().any() else 1.0
        hi = float(np.nanmax(ops["ai"])) if ops["ai"].notna().any() else 1e3
        xs = np.geomspace(max(lo / 4, 1e-2), hi * 4, 200)
        peak = max(hw.mpe.rate(m, w, w) for m in ("mm", "mv") for w in (8, 16))
        ax.plot(xs, np.minimum(xs * bpc, peak * 1.5), "k--", lw=1, label=f"HBM roof ({hw.hbm.bandwidth_gbps:g} GB/s x {hw.hbm.efficiency:g})")
        for mode, ls in (("mm", "-"), ("mv", ":")):
            for w, a, col in ((16, 16, "tab:blue"), (8, 8, "tab:green")):
                r = hw.mpe.rate(mode, w, a)
                ax.axhline(r, color=col, ls=ls, lw=1, label=f"MPE {mode} W{w}A{a}: {r:g} MAC/cycle")
        for kind, mk in (("linear", "o"), ("attention", "s")):
            k = ops[(ops["kind"] == kind) & ~ai_on]
            ax.scatter(k["ai"], k["perf"], marker=mk, s=40, zorder=3, label=f"{kind} ops")
        ax.set_xscale("log")
        ax.set_yscale("log")
        lab = ops[ops["kind"].isin(["linear", "attention"]) & ~ai_on]
        label_points(ax, lab["ai"], lab["perf"], [n.replace("layer.", "") for n in lab["name"]])
        ax.set_xlabel("arithmetic intensity, MAC per off-chip byte")
        ax.set_ylabel("achieved MAC/cycle")
        extra = f"; {int(ai_on.sum())} op(s) with no off-chip bytes not shown" if ai_on.any() else ""
        ax.set_title(f"{g.name}{extra}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"Roofline per op on {hw.name}")
    return _save(fig, path)


DEFAULT_SHAPES = ((3584, 3584), (3584, 512), (3584, 18944), (18944, 3584), (3584, 152064))
DEFAULT_BITS = ("W8A8", "W4A8", "W4A6", "W4A4", "W8A16", "W4A16", "W3A16", "W2A16")


def speedup_grid(hw: HardwareConfig, stage: str, tokens: int, shapes=DEFAULT_SHAPES, settings=DEFAULT_BITS,
                 method: str = "qe") -> pd.DataFrame:
    """Speedup over fp16 of single linears (shape x setting) with ``method`` adapters."""
    from qesim.graph.builders import single_linear_graph
    from qesim.perf.model import graph_cycles

    rows = []
    for k, n in shapes:
        base = graph_cycles(single_linear_graph(k, n, tokens=tokens, stage=stage), hw)
        for s in settings:
            q = graph_cycles(single_linear_graph(k, n, tokens=tokens, setting=s, method=method, stage=stage), hw)
            rows.append(dict(shape=f"{k}x{n}", setting=s, speedup=base / q))
    return pd.DataFrame(rows).pivot(index="shape", columns="setting", values="speedup").loc[
        [f"{k}x{n}" for k, n in shapes], list(settings)]


def speedup_heatmap(hw: HardwareConfig, path: Path, method: str = "qe", prefill_tokens: int = 128,
                    decode_tokens: int = 1) -> tuple[Path, dict]:
    """Heatmaps of single-linear speedup over fp16, shape x bit-width, prefill and decode."""
    grids = {"prefill": speedup_grid(hw, "prefill", prefill_tokens, method=method),
             "decode": speedup_grid(hw, "decode", decode_tokens, method=method)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.9), sharey=True, layout="constrained")
    vmax = max(float(g.values.max()) for g in grids.values())
    for ax, (stage, g) in zip(axes, grids.items()):
        im = ax.imshow(g.values, cmap="RdYlGn", vmin=0, vmax=max(vmax, 1.01), aspect="auto")
        ax.set_xticks(range(g.shape[1]), g.columns, rotation=0, fontsize=8)
        ax.set_yticks(range(g.shape[0]), [f"{s} (K x N)" for s in g.index], fontsize=8)
        ax.tick_params(axis="y", labelleft=ax is axes[0])
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                ax.text(j, i, f"{g.values[i, j]:.2f}", ha="center", va="center", fontsize=7)
        t = prefill_tokens if stage == "prefill" else decode_tokens
        ax.set_title(f"{stage}, M = {t} tokens", fontsize=10)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label=f"speedup over W16A16 (method {method})")
    fig.suptitle(f"Single-linear speedup over fp16 on {hw.name}: shape x bit-width")
    return _save(fig, path), grids


def _category(name: str, kind: str) -> str:
    n = name.replace("layer.", "")
    if kind == "linear":
        if n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            return "attention linears (q,k,v,o)"
        if n == "lm_head":
            return "lm_head"
        return "MLP linears"
    if kind == "attention":
        return "attention (QK^T, softmax, PV)"
    if kind == "embedding":
        return "embedding"
    if "quant" in n:
        return "activation quantize (SFU)"
    return "norms, act, rope, residual (SFU)"


def latency_breakdown(model: str, hw: HardwareConfig, combos: Sequence[tuple[str, str]],
                      prefill_len: int = 128, context: int = 512) -> pd.DataFrame:
    """Latency (ms) per op category for each (setting, method) and stage."""
    from qesim.graph.builders import build_graph
    from qesim.perf.model import estimate_graph

    rows = []
    for stage in ("prefill", "decode"):
        for s, m in combos:
            g = build_graph(model, stage=stage, seq_len=prefill_len, context_len=0 if stage == "prefill" else context,
                            setting=s, method=m)
            est = estimate_graph(g, hw)
            for r in est.ops.itertuples():
                rows.append(dict(stage=stage, config=f"{s}{'' if m == 'none' else '+' + m}",
                                 category=_category(r.name, r.kind), ms=r.total_cycles / hw.frequency_hz * 1e3))
    df = pd.DataFrame(rows)
    return df.groupby(["stage", "config", "category"], sort=False)["ms"].sum().reset_index()


def latency_breakdown_plot(df: pd.DataFrame, path: Path, title: str) -> Path:
    """Stacked bars: latency per op category, one bar per configuration, a panel per stage."""
    stages = list(dict.fromkeys(df["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(6.4 * len(stages), 4.4), squeeze=False)
    cats = list(dict.fromkeys(df["category"]))
    colors = plt.get_cmap("tab10")
    for ax, st in zip(axes.ravel(), stages):
        d = df[df["stage"] == st].pivot(index="config", columns="category", values="ms").fillna(0.0)
        d = d.loc[list(dict.fromkeys(df[df["stage"] == st]["config"]))]
        bottom = np.zeros(len(d))
        for i, c in enumerate(cats):
            if c not in d.columns:
                continue
            ax.bar(range(len(d)), d[c].values, bottom=bottom, color=colors(i % 10), label=c)
            bottom += d[c].values
        for i, tot in enumerate(bottom):
            ax.text(i, tot, f"{tot:.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(float(bottom.max()), 1e-9) * 1.3)  # from 0, with room for the totals and the legend
        ax.set_xticks(range(len(d)), d.index, rotation=20, fontsize=8)
        ax.set_ylabel("latency per pass, ms")
        ax.set_title(st)
        ax.grid(True, axis="y", alpha=0.3)
    axes.ravel()[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title)
    return _save(fig, path)
