"""``qesim explore``: a local Dash app over the cost model (localhost only).

Dash (Plotly) was chosen over Streamlit and Panel: its callbacks are plain HTTP requests that
recompute only the outputs a knob feeds (Streamlit re-runs the whole script per change; Panel
needs a Bokeh server websocket), its components have stable DOM ids a headless-browser test can
drive, it ships its JavaScript inside the wheel (no CDN, nothing downloaded at run time) and
plotly draws the roofline and breakdowns. All numbers come from :func:`qesim.explore.model.evaluate`.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Optional

from qesim.explore import model as M

KIND_COLORS = {"mac": "#4c72b0", "sfu": "#dd8452", "sram": "#55a868", "hbm": "#c44e52", "ddr": "#8172b3",
               "static": "#937860"}
CATEGORICAL = ("model", "hw", "setting", "method", "stage", "bound")


def _fmt(v, unit: str = "", scale: float = 1.0, digits: int = 4) -> str:
    if v is None:
        return "not known"
    return f"{v * scale:.{digits}g}{(' ' + unit) if unit else ''}"


def _card(title: str, ident: str):
    from dash import html

    return html.Div([html.Div(title, className="t"), html.Div(id=ident, className="v")], className="card")


def _knob(label: str, ident: str, lo: float, hi: float, step: float, marks: dict):
    from dash import dcc, html

    return html.Div([
        html.Label([label, " ", html.Span(id=f"{ident}-show", className="show")]),
        dcc.Slider(id=ident, min=lo, max=hi, step=step, marks=marks, updatemode="mouseup",
                   allow_direct_input=False),
    ], className="knob")


def _log2_marks(lo: int, hi: int, fmt) -> dict:
    return {i: fmt(2 ** i) for i in range(lo, hi + 1, 4)}


def _bytes(b: float) -> str:
    for u, d in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if b >= d:
            return f"{b / d:g} {u}"
    return f"{b:g} B"


CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
.top{display:flex;gap:10px;flex-wrap:wrap;padding:8px 14px;background:#fff;border-bottom:1px solid #ddd}
.top > div{min-width:130px}
.main{display:flex;gap:14px;padding:10px 14px}
.side{width:330px;flex:none}
.knob{margin-bottom:14px}.show{font-weight:600}
.cards{display:flex;gap:8px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px 10px;min-width:120px}
.card .t{font-size:12px;color:#666}.card .v{font-size:18px;font-weight:600}
table.ops{border-collapse:collapse;font-size:12px;width:100%}
table.ops td,table.ops th{border-bottom:1px solid #eee;padding:2px 6px;text-align:right}
table.ops td:first-child,table.ops th:first-child{text-align:left}
.warn{color:#a33;font-size:12px}
"""


def build_app(sweep: Optional[str] = None, model: str = "llama2-7b", hw: str = "flightllm-u280"):
    """The Dash app (not started). ``sweep``: a sweep Parquet to preload in the sweep tab."""
    import dash
    from dash import Input, Output, State, dcc, html, no_update

    from qesim.graph.presets import preset_names as model_names
    from qesim.graph.settings import METHODS
    from qesim.hw.loader import preset_names as hw_names

    # import pandas and plotly before the server's threads do: a lazy import racing another
    # callback thread leaves a partially initialised module ("pandas has no attribute Series")
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401

    app = dash.Dash(__name__, title="qesim explore", serve_locally=True)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    k0 = M.preset_knobs(hw)

    def dd(ident, options, value, label):
        return html.Div([html.Label(label), dcc.Dropdown(id=ident, options=list(options), value=value,
                                                         clearable=False)])

    def num(ident, value, label, lo=0):
        return html.Div([html.Label(label), dcc.Input(id=ident, type="number", value=value, min=lo, debounce=True,
                                                      style={"width": "100px"})])

    top = html.Div([
        dd("model", model_names(), model, "model"), dd("hw", hw_names(), hw, "hardware preset"),
        dd("setting", M.SETTINGS, "W4A8", "setting"), dd("method", METHODS, "qe", "method"),
        dd("stage", ("prefill", "decode"), "prefill", "stage"),
        num("seq_len", 128, "seq len", 1), num("context_len", 0, "context", 0), num("batch", 1, "batch", 1),
    ], className="top")
    side = html.Div([
        _knob("HBM bandwidth", "hbm_gbps", math.log2(16), math.log2(16384), 0.05,
              {i: f"{2 ** i:g}" for i in range(4, 15, 2)}),
        _knob("MAC scale", "mac_scale", -3, 3, 0.25, {i: f"{2 ** i:g}x" for i in range(-3, 4)}),
        _knob("weight buffer", "weight_bytes", 12, 28, 1, _log2_marks(12, 28, _bytes)),
        _knob("activation buffer", "act_bytes", 12, 28, 1, _log2_marks(12, 28, _bytes)),
        _knob("output buffer", "out_bytes", 12, 28, 1, _log2_marks(12, 28, _bytes)),
        _knob("frequency", "frequency_mhz", 50, 2000, 5, {i: f"{i}" for i in (50, 500, 1000, 1500, 2000)}),
        html.Button("reset to preset", id="reset"),
        html.Div(id="warnings", className="warn"),
    ], className="side")
    cards = html.Div([
        _card("latency", "out-latency"), _card("tokens/s", "out-tps"), _card("energy / token", "out-ept"),
        _card("avg power", "out-power"), _card("area", "out-area"), _card("die cost", "out-cost"),
        _card("bound", "out-bound"),
    ], className="cards")
    estimate_tab = html.Div([top, html.Div([
        side,
        html.Div([
            cards,
            html.Div([dcc.Graph(id="roofline", style={"height": "360px", "flex": "1"}),
                      dcc.Graph(id="breakdown", style={"height": "360px", "flex": "1"})],
                     style={"display": "flex", "gap": "8px"}),
            html.Div(id="ops-table"),
        ], style={"flex": "1", "minWidth": "0"}),
    ], className="main")])
    sweep_tab = html.Div([
        html.Div([
            html.Div([html.Label("sweep Parquet"), dcc.Input(id="sweep-path", value=sweep or "", debounce=True,
                                                            style={"width": "420px"})]),
            html.Div([html.Label("x (min)"), dcc.Dropdown(id="sweep-x", clearable=False)], style={"width": "200px"}),
            html.Div([html.Label("y (min)"), dcc.Dropdown(id="sweep-y", clearable=False)], style={"width": "200px"}),
            html.Div([html.Label("3rd objective (min, optional)"), dcc.Dropdown(id="sweep-z")],
                     style={"width": "220px"}),
        ], className="top"),
        html.Div(id="sweep-filters", className="top"),
        html.Div(id="sweep-msg", className="warn"),
        dcc.Graph(id="sweep-plot", style={"height": "420px"}),
        html.Div(id="sweep-table"),
    ])
    app.layout = html.Div([
        dcc.Tabs([dcc.Tab(estimate_tab, label="estimate", value="estimate"),
                  dcc.Tab(sweep_tab, label="sweep Pareto front", value="sweep")], value="estimate"),
    ])

    # ---- preset -> knob values (log2 where the slider is logarithmic)
    @app.callback([Output(k, "value") for k in M.KNOBS], Input("hw", "value"), Input("reset", "n_clicks"))
    def _preset(hw_name, _n):
        k = M.preset_knobs(hw_name)
        return (math.log2(k["hbm_gbps"]), 0.0, math.log2(k["weight_bytes"]), math.log2(k["act_bytes"]),
                math.log2(k["out_bytes"]), k["frequency_mhz"])

    def knobs_of(vals) -> dict:
        hb, ms, wb, ab, ob, f = vals
        out = {}
        if hb is not None:
            out["hbm_gbps"] = round(2 ** hb, 3)
        if ms is not None:
            out["mac_scale"] = 2 ** ms
        for name, v in (("weight_bytes", wb), ("act_bytes", ab), ("out_bytes", ob)):
            if v is not None:
                out[name] = int(round(2 ** v))
        if f is not None:
            out["frequency_mhz"] = float(f)
        return out

    # Two callbacks on the same inputs: the numbers (small, rendered at once) and the figures + op
    # table (heavier to draw); both read one memoised evaluation of the knob state.
    outs = [Output("out-latency", "children"), Output("out-latency", "data-value"), Output("out-tps", "children"),
            Output("out-ept", "children"), Output("out-ept", "data-value"), Output("out-power", "children"),
            Output("out-area", "children"), Output("out-cost", "children"), Output("out-bound", "children"),
            Output("warnings", "children")] + [Output(f"{k}-show", "children") for k in M.KNOBS] + [
            Output(f"{k}-show", "data-value") for k in M.KNOBS]
    ins = [Input(i, "value") for i in ("model", "hw", "setting", "method", "stage", "seq_len", "context_len",
                                       "batch")] + [Input(k, "value") for k in M.KNOBS]

    def _state(model_, hw_, setting, method, stage, seq_len, context_len, batch, *kv):
        """(result, None) or (None, error line) for a knob state (memoised: both callbacks share it)."""
        from qesim.errors import InputError

        try:
            w = M.Workload(model=model_, setting=setting, method=method, stage=stage, seq_len=int(seq_len or 1),
                           context_len=int(context_len or 0), batch=int(batch or 1))
            return _evaluate(w, hw_, tuple(sorted(knobs_of(kv).items()))), None
        except (InputError, ValueError, KeyError) as e:
            return None, str(e).splitlines()[0]

    @app.callback(outs, ins)
    def _numbers(*args):
        r, err = _state(*args)
        if r is None:
            return ["error"] + [no_update] * 8 + [err] + [no_update] * (2 * len(M.KNOBS))
        k = r["knobs"]
        shows = [f"{k['hbm_gbps']:g} GB/s", f"{k['mac_scale']:g}x", _bytes(k["weight_bytes"]), _bytes(k["act_bytes"]),
                 _bytes(k["out_bytes"]), f"{k['frequency_mhz']:g} MHz"]
        ept = r["energy_per_token_j"]
        return [
            _fmt(r["latency_s"], "ms", 1e3), repr(r["latency_s"]), _fmt(r["tokens_per_s"], "", 1, 5),
            _fmt(ept, "mJ", 1e3), "" if ept is None else repr(ept),
            _fmt(r["avg_power_w"], "W") + (f" ({r['energy_model']})" if r["energy_model"] != "none" else ""),
            _fmt(r["area_mm2"], "mm²"), ("not known" if r["cost_usd"] is None else f"${r['cost_usd']:.4g}"), r["bound"],
            "; ".join(r["warnings"]),
        ] + shows + [repr(k[name]) for name in M.KNOBS]

    @app.callback([Output("roofline", "figure"), Output("breakdown", "figure"), Output("ops-table", "children")], ins)
    def _figures(*args):
        r, _ = _state(*args)
        if r is None:
            return no_update, no_update, no_update
        return _roofline(r), _breakdown(r), _ops_table(r)

    # ---- sweep tab
    @app.callback(Output("sweep-x", "options"), Output("sweep-y", "options"), Output("sweep-z", "options"),
                  Output("sweep-x", "value"), Output("sweep-y", "value"), Output("sweep-z", "value"),
                  Output("sweep-filters", "children"), Output("sweep-msg", "children"), Input("sweep-path", "value"))
    def _load(path):
        df, msg = _read_sweep(path)
        if df is None:
            return [], [], [], None, None, None, [], msg
        nums = [c for c in df.columns if c not in CATEGORICAL and df[c].dtype.kind in "fi" and c != "point_id"]
        x = "latency_s" if "latency_s" in nums else nums[0]
        known = [c for c in nums if df[c].notna().any()]
        y = next((c for c in ("energy_per_token_j", "area_mm2", "sram_bytes") if c in known), known[-1])
        z = "area_mm2" if ("area_mm2" in known and y != "area_mm2") else None
        filters = [html.Div([html.Label(c), dcc.Dropdown(id={"type": "sweep-filter", "col": c},
                                                         options=sorted(map(str, df[c].unique())), multi=True)],
                            style={"minWidth": "160px"}) for c in CATEGORICAL if c in df.columns]
        return nums, nums, nums, x, y, z, filters, f"{len(df)} points from {path}"

    @app.callback(Output("sweep-plot", "figure"), Output("sweep-table", "children"),
                  Input("sweep-x", "value"), Input("sweep-y", "value"), Input("sweep-z", "value"),
                  Input({"type": "sweep-filter", "col": dash.ALL}, "value"),
                  State({"type": "sweep-filter", "col": dash.ALL}, "id"), State("sweep-path", "value"))
    def _front(x, y, z, vals, ids, path):
        import plotly.graph_objects as go

        df, _ = _read_sweep(path)
        if df is None or x is None or y is None:
            return go.Figure(), None
        filters = {i["col"]: v for i, v in zip(ids or [], vals or []) if v}
        allp, front = M.sweep_front(df, x, y, filters, z)
        front = front.sort_values(x)
        fig = go.Figure()
        fig.add_scatter(x=allp[x], y=allp[y], mode="markers", name="points", marker={"color": "#bbb", "size": 5})
        if z:  # a 3-objective front: colour by the third objective
            fig.add_scatter(x=front[x], y=front[y], mode="markers", name=f"Pareto front ({x}, {y}, {z})",
                            marker={"color": front[z], "size": 9, "colorscale": "Viridis", "showscale": True,
                                    "colorbar": {"title": z}, "line": {"color": "#c44e52", "width": 1}})
        else:
            fig.add_scatter(x=front[x], y=front[y], mode="lines+markers", name="Pareto front",
                            marker={"color": "#c44e52", "size": 8})
        fig.update_layout(xaxis_title=x, yaxis_title=y, margin={"t": 30, "l": 60, "r": 10, "b": 40},
                          title=f"{len(front)} of {len(allp)} points on the front",
                          legend={"orientation": "h", "y": 1.02, "x": 0.4})
        cols = [c for c in df.columns if c != "point_id"]
        table = html.Table([html.Tr([html.Th(c) for c in cols])] +
                           [html.Tr([html.Td(_cell(row[c])) for c in cols]) for _, row in front.head(200).iterrows()],
                           className="ops", id="front-table")
        return fig, table

    return app


_SWEEPS: dict = {}
_EVALS: dict = {}
_EVALS_LOCK = threading.Lock()  # the server runs callbacks in threads


def _evaluate(w, hw_name: str, knobs: tuple) -> dict:
    """:func:`qesim.explore.model.evaluate`, memoised per knob state (the two callbacks of one change
    share it; at most 64 states kept)."""
    key = (w, hw_name, knobs)
    with _EVALS_LOCK:  # one evaluation per state even when both callbacks ask at once
        r = _EVALS.get(key)
        if r is None:
            if len(_EVALS) >= 64:
                _EVALS.pop(next(iter(_EVALS)))
            r = _EVALS[key] = M.evaluate(w, hw_name, dict(knobs))
    return r


def _read_sweep(path):
    if not path:
        return None, "no sweep loaded: give the path of a sweep Parquet (qesim sweep writes sweep.parquet)"
    p = Path(path)
    if p.is_dir():
        p = p / "sweep.parquet"
    if not p.is_file():
        return None, f"{p}: not found"
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _SWEEPS:
        import pandas as pd

        try:
            _SWEEPS[key] = pd.read_parquet(p)
        except Exception as e:  # a corrupt or non-Parquet file: one line, not a traceback
            return None, f"{p}: cannot read as Parquet ({type(e).__name__})"
    return _SWEEPS[key], ""


def _cell(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _roofline(r: dict):
    import plotly.graph_objects as go

    peak, bw = r["peak_macs_per_s"], r["hbm_bytes_per_s"]
    pts = [o for o in r["ops"] if o["intensity"] and o["macs"] > 0]
    fig = go.Figure()
    lo = min([o["intensity"] for o in pts] + [0.1])
    hi = max([o["intensity"] for o in pts] + [peak / bw * 10])
    xs = [lo / 2, peak / bw, hi * 2]
    fig.add_scatter(x=xs, y=[min(peak, x * bw) for x in xs], mode="lines", name="roof (HBM, peak MAC rate)",
                    line={"color": "#333"})
    by_kind: dict = {}
    for o in pts:
        by_kind.setdefault(o["kind"], []).append(o)
    for kind, os_ in by_kind.items():
        fig.add_scatter(x=[o["intensity"] for o in os_], y=[o["macs_per_s"] for o in os_], mode="markers",
                        name=kind, text=[o["name"] for o in os_], hovertemplate="%{text}<br>%{x:.3g} MAC/B, %{y:.3g} MAC/s")
    fig.update_layout(xaxis={"type": "log", "title": "MACs per off-chip byte"},
                      yaxis={"type": "log", "title": "achieved MAC/s"}, title="roofline",
                      margin={"t": 30, "l": 60, "r": 10, "b": 40}, legend={"font": {"size": 10}})
    return fig


def _breakdown(r: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    data = r["energy_by_kind_class_j"]
    kinds = list(data)
    classes = [c for c in KIND_COLORS if any(data[k].get(c, 0) for k in kinds)]
    for c in classes:
        fig.add_bar(x=kinds, y=[data[k].get(c, 0.0) * 1e3 for k in kinds], name=c, marker_color=KIND_COLORS[c])
    title = "energy per pass by op kind (mJ)" if data else "energy: not known for this config"
    fig.update_layout(barmode="stack", title=title, margin={"t": 30, "l": 60, "r": 10, "b": 40},
                      yaxis_title="mJ per pass")
    return fig


def _ops_table(r: dict):
    from dash import html

    cols = [("op", "name"), ("kind", "kind"), ("x", "repeat"), ("µs/call", "time_us"), ("share %", "share_pct"),
            ("bytes/call", "bytes"), ("MACs/call", "macs"), ("µJ/call", "energy_uj"), ("bound", "bound"),
            ("tile", "tile")]
    head = html.Tr([html.Th(c) for c, _ in cols])
    rows = [html.Tr([html.Td(_cell(o[k]) if o[k] is not None else "-") for _, k in cols]) for o in r["ops"]]
    return html.Table([head] + rows, className="ops", id="ops")


def serve(port: int = 8050, sweep: Optional[str] = None, model: str = "llama2-7b", hw: str = "flightllm-u280") -> None:
    """Run the app on http://127.0.0.1:PORT/ (localhost only) until interrupted."""
    app = build_app(sweep=sweep, model=model, hw=hw)
    app.run(host="127.0.0.1", port=port, debug=False)
