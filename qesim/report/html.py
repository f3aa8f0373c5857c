"""One static HTML page (tables + PNGs, no server, no external assets) gathering qesim's reports.

Sections, each skipped with a note when its input is missing:

1. QE Table 8 reproduced (re-run through ``qesim.report.table8``), its orderings and decode speedups;
2. quantizers' accuracy vs speed (``accuracy.csv`` from ``qesim accuracy``, joined with speedups
   computed here);
3. a design-space sweep (``sweep.parquet`` from ``qesim sweep``): summary, Pareto fronts, plots;
4. per-op views on the DSE base config: roofline, shape x bit-width speedup heatmaps, latency
   breakdowns;
5. whole-request inference and analytical-vs-cycle engine reports, if present, plus any other
   PNG figures found next to the page.

Figures go to ``OUT/index_files/``; the page is ``OUT/index.html``.
"""

from __future__ import annotations

import html
import shlex
import sys
from pathlib import Path
from typing import Optional

import pandas as pd

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
.tbl{display:inline-block;vertical-align:top;overflow-x:auto;max-width:100%;max-height:32em;overflow-y:auto;margin:.6em 0 1em;border:1px solid #eee}
table{border-collapse:collapse;font-size:.82em;margin:0}
thead th{position:sticky;top:0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right;white-space:nowrap}th{background:#f3f3f3;white-space:normal;vertical-align:bottom}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:.9em}.skip{color:#a15c00;background:#fff6e5;padding:.4em .6em;border-left:3px solid #e0a000}
div.skip p{margin:.2em 0 .4em}table.index td,table.index th{text-align:left;white-space:normal}table.index td:first-child{white-space:nowrap}table.plain td{border:0;padding:.1em 1.2em .1em 0;text-align:left;white-space:normal;font-size:1.05em}
code{background:#f5f5f5;padding:0 .2em}nav a{margin-right:1em}
"""

# marks the page once its images have loaded (used by the headless-browser test)
CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0, bad = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; else bad++;
  }
  document.body.setAttribute('data-images-ok', ok);
  document.body.setAttribute('data-images-broken', bad);
});
"""


def _table(df: pd.DataFrame, floatfmt: str = "{:.4g}", max_rows: int = 60, cls: str = "") -> str:
    more = ""
    if len(df) > max_rows:
        more = f'<p class="note">first {max_rows} of {len(df)} rows</p>'
        df = df.head(max_rows)
    df = humanize(df)
    df.columns.name = None  # a pivot's column-axis name would add an empty header cell
    body = df.to_html(index=False, border=0, classes=cls or None, na_rep="",
                      float_format=lambda v: floatfmt.format(v))
    return f'<div class="tbl">{body}</div>' + more  # wide tables scroll inside their box


def _human_bytes(b: float) -> str:
    for unit, div in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b:.0f} B"


def _human_seconds(s: float) -> str:
    for unit, mul in (("s", 1.0), ("ms", 1e3), ("µs", 1e6), ("ns", 1e9)):
        if abs(s) * mul >= 1 or unit == "ns":
            return f"{s * mul:.4g} {unit}"
    return f"{s:.3g} s"


def humanize(df: pd.DataFrame) -> pd.DataFrame:
    """Byte, second and bandwidth columns in human units (MiB, ms/µs, GB/s) for display; other
    columns unchanged. The CSV files keep the raw numbers."""
    out = df.copy()
    for c in out.columns:
        col = out[c]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        name = str(c)
        if name.endswith("_bytes") or name == "bytes" or name.startswith("bytes_"):
            out[c] = [("" if pd.isna(v) else _human_bytes(float(v))) for v in col]
        elif name.endswith("_s") and not name.endswith("tokens_per_s"):
            out[c] = [("" if pd.isna(v) else _human_seconds(float(v))) for v in col]
        elif name.endswith("_gbps"):
            out[c] = [("" if pd.isna(v) else f"{float(v):.4g} GB/s") for v in col]
    return out


def _img(rel: str, alt: str) -> str:
    return f'<p><img src="{html.escape(rel)}" alt="{html.escape(alt)}"></p>'


def _skip(msg: str, command: Optional[str] = None) -> str:
    """A skipped-section note; ``command`` is the command that produces the missing input."""
    fill = f' Fill it with <code>{html.escape(command)}</code>.' if command else ""
    return f'<p class="skip">Skipped: {html.escape(msg)}{fill}</p>'


def _p(text: str) -> str:
    return f"<p>{text}</p>"


# ----------------------------------------------------------------------------- sections
def section_table8(hw_name: str) -> str:
    from qesim.hw.loader import load_hw
    from qesim.report.table8 import CSV_COLUMNS, orderings, reproduce

    hw = load_hw(hw_name)
    main = reproduce(hw)
    dec = reproduce(hw, stage="decode", tokens=1)
    ords = orderings(main)
    out = [f"<h2 id='table8'>QE Table 8 reproduced on <code>{html.escape(hw.name)}</code></h2>",
           _p("NPU speedup of a QE linear (32 shared + 8 routed rank-32 experts, top-1, router) over the fp16 "
              "linear, prefill s = 128, re-computed now by the analytical model (the same code as "
              f"<code>qesim reproduce table8 --hw {html.escape(hw_name)}</code>; nothing is fitted to the paper)."),
           _table(main[CSV_COLUMNS + ["bound"]]),
           _p(f"Max |error| {main.error_pct.abs().max():.2f} %, mean |error| {main.error_pct.abs().mean():.2f} %."),
           "<ul>" + "".join(f"<li>{html.escape(n)}: {'holds' if ok else '<b>violated</b>'}</li>" for n, ok in ords)
           + "</ul>",
           "<h3>Decode speedups (s = 1; the paper reports none)</h3>",
           _table(dec[["in_features", "out_features", "setting", "qesim_speedup", "bound"]])]
    return "\n".join(out)


def _primary_metric(acc: pd.DataFrame) -> tuple[Optional[str], bool]:
    timing = {"quant_s", "eval_s"}
    metrics = [m for m in dict.fromkeys(acc["metric"]) if m not in timing]
    if not metrics:
        return None, True
    for m in metrics:
        if "ppl" in m.lower() or "perplex" in m.lower() or "loss" in m.lower() or "err" in m.lower():
            return m, True
    return metrics[0], False


def _accuracy_columns(wide: pd.DataFrame, metric: Optional[str]) -> pd.DataFrame:
    """Display order: keys, the primary metric, the speedups, other metrics; a per-block metric
    (``block_rel_err.0`` .. ``.29``) becomes one column, its mean over the blocks."""
    import re

    keys = ["model", "method", "setting"]
    per_block: dict = {}
    for c in wide.columns:
        m = re.fullmatch(r"(.+)\.(\d+)", str(c))
        if m and c not in keys:
            per_block.setdefault(m.group(1), []).append(c)
    out = wide.drop(columns=[c for cs in per_block.values() for c in cs])
    for name, cs in per_block.items():
        out[f"{name} (mean of {len(cs)} blocks)"] = wide[cs].mean(axis=1)
    first = keys + [c for c in (metric, "prefill_speedup", "decode_speedup") if c in out.columns]
    return out[first + [c for c in out.columns if c not in first]]


def section_accuracy(acc_path: Path, figdir: Path, rel: str, hw_name: str, model: str) -> str:
    head = "<h2 id='accuracy'>Quantizers: accuracy vs speed</h2>"
    if not acc_path.exists():
        return head + _skip(f"{acc_path} not found.", FILL_COMMANDS["accuracy"].format(out=acc_path.parent))
    from qesim.graph.builders import build_graph
    from qesim.graph.settings import METHODS
    from qesim.hw.loader import load_hw
    from qesim.perf.model import speedup

    acc = pd.read_csv(acc_path)
    need = {"model", "method", "setting", "metric", "value"}
    if not need <= set(acc.columns):
        return head + _skip(f"{acc_path} lacks columns {sorted(need - set(acc.columns))}.")
    acc = acc[~acc["method"].astype(str).str.startswith("_")]
    metric, lower = _primary_metric(acc)
    wide = acc.pivot_table(index=["model", "method", "setting"], columns="metric", values="value",
                           aggfunc="first").reset_index()
    wide.columns.name = None
    hw = load_hw(hw_name)
    speeds = {}
    for r_s, m in {(r.setting, r.method) for r in wide.itertuples()}:
        s, ms = r_s, str(m).lower()
        if ms in ("fp", "fp16"):  # the unquantized reference rows
            s, ms = "W16A16", "none"
        elif ms.startswith("qe"):  # QE variants (ablations) share QE's adapter structure
            ms = "qe"
        try:
            if ms not in METHODS:
                raise ValueError(ms)
            sp = {}
            for stage, kw in (("prefill", dict(seq_len=128)), ("decode", dict(context_len=512))):
                q = build_graph(model, stage=stage, setting=str(s), method=ms, **kw)
                b = build_graph(model, stage=stage, **kw)
                sp[stage] = speedup(b, q, hw)
            speeds[(r_s, m)] = sp
        except Exception:  # a method or setting the graph builder does not model
            speeds[(r_s, m)] = {"prefill": float("nan"), "decode": float("nan")}
    wide["prefill_speedup"] = [speeds[(r.setting, r.method)]["prefill"] for r in wide.itertuples()]
    wide["decode_speedup"] = [speeds[(r.setting, r.method)]["decode"] for r in wide.itertuples()]
    wide = _accuracy_columns(wide, metric)
    out = [head, _p(f"Accuracy from <code>{html.escape(str(acc_path))}</code> (model(s): "
                    f"{html.escape(', '.join(map(str, wide['model'].unique())))}); speed: the same method and "
                    f"setting on <code>{html.escape(model)}</code> shapes on <code>{html.escape(hw.name)}</code> "
                    "(prefill s = 128, decode at context 512), over W16A16. Methods the graph builder does not "
                    "model have no speed."),
           _table(wide)]
    if metric is not None:
        from qesim.report.plots import accuracy_speed_plot

        tab = wide.dropna(subset=[metric, "decode_speedup"])
        if len(tab):
            p = accuracy_speed_plot(tab, metric, "decode_speedup", figdir / "accuracy_vs_speed.png", lower)
            out.append(_img(f"{rel}/{p.name}", "accuracy vs speedup"))
    theirs = acc_path.parent / "speed_vs_accuracy.csv"
    if theirs.exists():
        out.append("<h3>Speed vs accuracy as <code>qesim accuracy</code> wrote it (speed on the accuracy model's "
                   "own graph)</h3>")
        try:
            out.append(_table(pd.read_csv(theirs)))
        except Exception as e:
            out.append(_skip(f"{theirs.name}: unreadable ({e})."))
        png = acc_path.parent / "speed_vs_accuracy.png"
        if png.exists():
            out.append(_img(png.name, "speed vs accuracy (qesim accuracy)"))
    return "\n".join(out)


def section_sweep(sweep_dir: Optional[Path], figdir: Path, rel: str, out_dir: Path = Path("reports")) -> str:
    head = "<h2 id='sweep'>Design-space sweep</h2>"
    if sweep_dir is None or not (Path(sweep_dir) / "sweep.parquet").exists():
        return head + _skip(f"no sweep result in {out_dir / 'sweep'} (or give its directory with --sweep).",
                            f"qesim sweep hw_configs/sweeps/flightllm-dse.yaml --out {out_dir / 'sweep'}")
    import json

    from qesim.dse.pareto import pareto_front
    from qesim.dse.runner import read_sweep
    from qesim.dse.space import WORKLOAD_FIELDS
    from qesim.report.plots import pareto_plot, sweep_sensitivity_plot

    df = read_sweep(sweep_dir)
    man = json.loads((Path(sweep_dir) / "manifest.json").read_text())
    axes = list(man.get("hw_axes", []))
    out = [head, _p(f"<code>{html.escape(str(man.get('source')))}</code> on base <code>{html.escape(man['base'])}"
                    f"</code>: {len(df)} points ({man.get('sampling')}), hardware axes "
                    f"{', '.join('<code>' + html.escape(a) + '</code>' for a in axes) or '(none)'}. "
                    f"Rows: <code>{html.escape(str(Path(sweep_dir) / 'sweep.parquet'))}</code>.")]
    p = pareto_plot(df, figdir / "sweep_pareto.png")
    out.append(_img(f"{rel}/{p.name}", "Pareto: latency vs SRAM vs MPE size"))
    if axes:
        p2 = sweep_sensitivity_plot(df, axes, figdir / "sweep_sensitivity.png")
        out.append(_img(f"{rel}/{p2.name}", "speedup vs swept axes"))
    summ = df.groupby(list(WORKLOAD_FIELDS), sort=False).agg(
        points=("point_id", "size"), latency_ms_min=("latency_s", lambda v: 1e3 * v.min()),
        latency_ms_max=("latency_s", lambda v: 1e3 * v.max()), speedup_min=("speedup", "min"),
        speedup_max=("speedup", "max"), bound=("bound", lambda v: ", ".join(f"{k} {c}" for k, c in
                                                                           v.value_counts().items()))).reset_index()
    out += ["<h3>Per workload</h3>", _table(summ.drop(columns=["batch", "density", "group_size"]))]
    front = pareto_front(df, {"latency_s": "min", "sram_bytes": "min", "mpe_macs_per_cycle": "min"},
                         by=list(WORKLOAD_FIELDS))
    cols = ["setting", "method", "stage"] + axes + ["latency_s", "tokens_per_s", "speedup", "bound", "sram_bytes",
                                                     "mpe_macs_per_cycle"]
    out += [f"<h3>Pareto fronts (latency, SRAM, MPE size; {len(front)} of {len(df)} points)</h3>",
            _table(front[[c for c in cols if c in front.columns]], max_rows=40)]
    return "\n".join(out)


def section_per_op(hw_name: str, model: str, figdir: Path, rel: str) -> str:
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw
    from qesim.report.plots import latency_breakdown, latency_breakdown_plot, roofline_plot, speedup_heatmap

    hw = load_hw(hw_name)
    out = [f"<h2 id='perop'>Per-op views: {html.escape(model)} on <code>{html.escape(hw.name)}</code></h2>"]
    graphs = [build_graph(model, stage="prefill", seq_len=128, setting="W4A8", method="qe"),
              build_graph(model, stage="decode", context_len=512, setting="W4A8", method="qe")]
    p = roofline_plot(graphs, hw, figdir / "roofline.png")
    out += ["<h3>Roofline per op (W4A8 + QE)</h3>", _img(f"{rel}/{p.name}", "roofline per op")]
    p, grids = speedup_heatmap(hw, figdir / "speedup_heatmap.png")
    out += ["<h3>Single-linear speedup over fp16: shape x bit-width (QE adapters)</h3>",
            _img(f"{rel}/{p.name}", "speedup heatmap")]
    for stage, g in grids.items():
        out += [f"<p class='note'>{stage}</p>", _table(g.reset_index(), floatfmt="{:.3f}")]
    combos = [("W16A16", "none"), ("W4A8", "none"), ("W4A8", "qe"), ("W3A16", "none"), ("W3A16", "qe")]
    bd = latency_breakdown(model, hw, combos)
    p = latency_breakdown_plot(bd, figdir / "latency_breakdown.png",
                               f"{model} on {hw.name}: latency per op category (prefill s=128, decode ctx=512)")
    wide = bd.pivot_table(index=["stage", "config"], columns="category", values="ms", sort=False).reset_index()
    wide.columns.name = None
    out += ["<h3>Latency breakdown (ms per pass)</h3>", _img(f"{rel}/{p.name}", "latency breakdown"),
            _table(wide, floatfmt="{:.2f}")]
    return "\n".join(out)


#: every report qesim writes into a reports directory: stem -> (title, the command that writes it).
#: The page links each one present and names the command of each one missing.
REPORTS = {
    "table8": ("QE Table 8 reproduced", "qesim reproduce table8 --out {out}"),
    "table12": ("QE Table 12: visual encoder and merger quantized", "qesim reproduce table12 --out {out}"),
    "inference": ("Whole-request inference", "qesim inference --report --out {out}"),
    "engines": ("Analytical vs cycle engine", "qesim compare-engines --all --out {out}"),
    "energy": ("Energy, power, area and cost", "qesim energy --report --out {out}"),
    "fidelity": ("Fidelity to measured kernels", "qesim fidelity --out {out}"),
    "accuracy": ("Quantizers' accuracy on a real small model", "qesim accuracy --model smollm2-135m --out {out}"),
    "speed_vs_accuracy": ("Accuracy beside modelled speedup",
                          "qesim accuracy --speed-from {out}/accuracy.csv --out {out}"),
    "quant_pareto": ("Budget-matched quantizer fronts", "qesim accuracy --pareto --out {out}"),
    "moe_speedup": ("MoE speedups", "qesim moe speedup --out {out}"),
    "moqe": ("MoQE on SmolLM2-135M", "qesim moqe run --out {out}"),
    "moqe_same_budget": ("MoQE with three W4A8 variants", "qesim moqe run --name moqe_same_budget --out {out}"),
    "veq": ("VEQ on a synthetic MoE layer; real-model accuracy not measured", "qesim moe veq --out {out}"),
}

#: reports whose CSV is shown as a table on the page (the others are linked)
TABLES = ("inference", "engines", "table12", "energy_presets", "moe_speedup", "moqe", "moqe_same_budget", "veq")

#: the command that writes each report section's input (named in its "Skipped" note)
FILL_COMMANDS = {stem: cmd for stem, (_, cmd) in REPORTS.items()}


def _md_title_and_command(md: Path) -> tuple[str, str]:
    """(first '# ' heading, the command its 'Generated by' line names) of a Markdown report."""
    import re

    try:
        text = md.read_text(errors="replace")[:20000]
    except OSError:
        return "", ""
    title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), "")
    m = re.search(r"(?:Generated|Written|Produced) by:? `([^`]+)`", text)
    return title, (m.group(1) if m else "")


def _link(out_dir: Path, p: Path) -> str:
    rel = p.relative_to(out_dir).as_posix()
    return f'<a href="{html.escape(rel)}">{html.escape(rel)}</a>'


def _companions(md: Path, mds: list) -> list:
    """CSV / PNG / JSON files next to ``md`` named ``STEM.*`` or ``STEM_*`` (``energy_presets.csv``
    for ``energy.md``), unless a longer report stem claims them (``moqe_same_budget.csv``)."""
    def owns(stem: str, name: str) -> bool:
        return name == stem or name.startswith(stem + "_")

    longer = [m.stem for m in mds if m.parent == md.parent and len(m.stem) > len(md.stem)]
    return sorted(q for q in md.parent.iterdir() if q.is_file() and q.suffix in (".csv", ".png", ".json")
                  and owns(md.stem, q.stem) and not any(owns(s, q.stem) for s in longer))


def _sweep_source(d: Path) -> str:
    """The space file a sweep directory's manifest names (as given to ``qesim sweep``), else SPACE.yaml."""
    import json

    try:
        src = json.loads((d / "manifest.json").read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        src = None
    return str(src) if isinstance(src, str) and src else "SPACE.yaml"


def section_index(out_dir: Path) -> str:
    """Every report found in ``out_dir`` (and one directory down), linked, with the command that
    wrote it; a Skipped note with the command for each known report that is missing."""
    mds = sorted(out_dir.glob("*.md")) + sorted(p for p in out_dir.glob("*/*.md") if p.parent.name != "index_files")
    rows = []
    for md in mds:
        title, cmd = _md_title_and_command(md)
        others = [q for q in _companions(md, mds)]
        rows.append("<tr><td>" + _link(out_dir, md) + "</td><td>" + html.escape(title) + "</td><td>"
                    + (f"<code>{html.escape(cmd)}</code>" if cmd else "") + "</td><td>"
                    + " ".join(_link(out_dir, q) for q in others) + "</td></tr>")
    traces = sorted(out_dir.glob("trace_*.json"))
    for t in traces:
        rows.append("<tr><td>" + _link(out_dir, t) + "</td><td>cycle-model Chrome trace (open in Perfetto)</td>"
                    "<td><code>qesim compare-engines --trace DIR</code></td><td>"
                    + " ".join(_link(out_dir, q) for q in sorted(out_dir.glob(t.stem + ".png"))) + "</td></tr>")
    for d in sorted(p.parent for p in out_dir.glob("*/sweep.parquet")):
        rows.append("<tr><td>" + _link(out_dir, d / "sweep.parquet") + "</td><td>design-space sweep</td><td>"
                    "<code>qesim sweep " + html.escape(_sweep_source(d)) + " --out " + html.escape(str(d))
                    + "</code></td><td>" + " ".join(_link(out_dir, q) for q in (d / "pareto.csv", d / "manifest.json")
                                                    if q.exists()) + "</td></tr>")
    parts = ["<h2 id='index'>All reports in this directory</h2>"]
    if rows:
        parts.append('<div class="tbl" style="max-height:none"><table class="index"><thead><tr><th>report</th><th>title</th><th>written by</th>'
                     "<th>data and figures</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")
    else:
        parts.append(_p(f"No report in <code>{html.escape(str(out_dir))}</code> yet; the commands below write them."))
    have = {p.stem for p in out_dir.glob("*.md")} | {p.stem for p in out_dir.glob("*.csv")}
    missing = [stem for stem in REPORTS if stem not in have]
    if missing:  # one Skipped box: each missing report with the command that writes it
        items = "".join(f"<tr><td>{html.escape(REPORTS[s][0])} (<code>{html.escape(s)}.md</code>)</td><td>"
                        f"<code>{html.escape(REPORTS[s][1].format(out=out_dir))}</code></td></tr>" for s in missing)
        parts.append(f'<div class="skip"><p>Skipped: {len(missing)} report(s) not found in '
                     f"<code>{html.escape(str(out_dir))}</code>. Fill each with its command:</p>"
                     f'<table class="plain"><tbody>{items}</tbody></table></div>')
    return "\n".join(parts)


def section_existing(out_dir: Path, own_figs: set) -> str:
    """The CSV tables of the reports found in ``out_dir`` (see :data:`TABLES`) and any other PNG
    figures next to the page; links to the full Markdown texts."""
    parts = ["<h2 id='others'>Inference, engine, energy and MoE reports</h2>"]
    for stem in TABLES:
        base = "energy" if stem == "energy_presets" else stem
        csv = out_dir / f"{stem}.csv"
        md = out_dir / f"{base}.md"
        if not csv.exists() and not md.exists():
            continue  # named, with its command, in the index section
        title = REPORTS[base][0] + ("" if base == stem else " (every preset)")
        parts.append(f"<h3>{html.escape(title)} (<code>{html.escape(REPORTS[base][1].split(' --out')[0])}</code>)</h3>")
        if md.exists():
            parts.append(f'<p class="note">Full text: <a href="{html.escape(md.name)}">{html.escape(md.name)}</a></p>')
        if csv.exists():
            try:
                parts.append(_table(pd.read_csv(csv), max_rows=40))
            except Exception as e:  # a malformed CSV is reported, not fatal
                parts.append(_skip(f"{csv.name}: unreadable ({e})."))
    pngs = sorted(p for p in out_dir.glob("*.png") if p.name not in own_figs and p.name != "speed_vs_accuracy.png")
    if pngs:
        parts.append("<h3>Other figures</h3>")
        for p in pngs:
            parts += [f"<p class='note'>{html.escape(p.name)}</p>", _img(p.name, p.stem)]
    if len(parts) == 1:
        parts.append(_p("None of these reports is in this directory (see the list above for the commands)."))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- page
def build_report(out_dir: str | Path, sweep_dir: Optional[str | Path] = None, *, table8_hw: str = "qe-paper-npu",
                 dse_hw: str = "flightllm-u280", model: str = "qwen2vl-7b",
                 accuracy_csv: Optional[str | Path] = None, command: Optional[str] = None) -> Path:
    """Write ``OUT/index.html`` and its figures; return the page's path."""
    out_dir = Path(out_dir)
    figdir = out_dir / "index_files"
    figdir.mkdir(parents=True, exist_ok=True)
    rel = figdir.name
    acc = Path(accuracy_csv) if accuracy_csv else out_dir / "accuracy.csv"
    from qesim.progress import command_line

    cmd = command or command_line("qesim report --out " + shlex.quote(str(out_dir)))
    sections = [
        section_table8(table8_hw),
        section_accuracy(acc, figdir, rel, dse_hw, model),
        section_sweep(Path(sweep_dir) if sweep_dir else None, figdir, rel, out_dir),
        section_per_op(dse_hw, model, figdir, rel),
        section_existing(out_dir, set()),
    ]
    index = section_index(out_dir)
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (("index", "All reports"), ("table8", "Table 8"),
                                                          ("accuracy", "Accuracy vs speed"), ("sweep", "Sweep"),
                                                          ("perop", "Per-op"), ("others", "Other reports")))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qesim report</title>
<style>{CSS}</style><script>{CHECK_JS}</script></head>
<body>
<h1>qesim report</h1>
<p class="note">Generated by <code>{html.escape(cmd)}</code>. Regenerate; do not edit.
Table 8 on <code>{html.escape(table8_hw)}</code>; per-op views and quantizer speeds on
<code>{html.escape(dse_hw)}</code> with <code>{html.escape(model)}</code>. Every number comes from the
analytical model under the named config's written assumptions (see <code>hw_configs/</code>).</p>
<nav>{nav}</nav>
{index}
{''.join(sections)}
</body></html>
"""
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
