"""Timelines of a cycle-model run: Chrome trace JSON (Perfetto / chrome://tracing) and a Gantt PNG.

Both read a :class:`~qesim.sim.engine.GraphSimResult` simulated with ``record=True``.

Layout: one process ("accelerator"), one thread (lane) per resource -- ``ops`` (one span per op
instance, every layer), ``hbm``, ``ddr``, ``mpe``, ``sfu`` (one span per busy interval). Busy
intervals are shown for the **first** instance of each op only (repeats of a layer are
identical, and drawing all of them would make the file ~``layers`` times larger); later
instances appear as op spans.

Units: the trace's ``ts``/``dur`` are microseconds, as the Trace Event Format requires
(cycles / frequency_hz * 1e6); every event also carries ``args.start_cycle``/``args.cycles``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from qesim.sim.engine import GraphSimResult

LANES = ("ops", "hbm", "ddr", "mpe", "sfu")


def _offsets(res: GraphSimResult) -> dict:
    """op index -> cycles to add to its compact-timeline intervals to place its first instance."""
    off = {}
    for k, rep, t0, _ in res.instances():
        if rep == 0 and k not in off:
            off[k] = t0 - res.ops[k].start
    return off


def chrome_trace(res: GraphSimResult, *, title: Optional[str] = None) -> dict:
    """The Trace Event Format object ``{"traceEvents": [...], "displayTimeUnit": "ns", ...}``."""
    us = 1e6 / res.frequency_hz
    pid = 1
    ev: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
         "args": {"name": title or f"qesim {res.schedule.graph_name}"}},
    ]
    for tid, lane in enumerate(LANES):
        ev.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": lane}})
        ev.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}})
    tids = {lane: i for i, lane in enumerate(LANES)}
    for k, rep, t0, t1 in res.instances():
        o = res.ops[k]
        ev.append({"name": o.name, "cat": o.kind, "ph": "X", "pid": pid, "tid": tids["ops"],
                   "ts": t0 * us, "dur": (t1 - t0) * us,
                   "args": {"repeat_index": rep, "start_cycle": t0, "cycles": t1 - t0, "bound": o.bound,
                            "steps": o.steps, "sim_steps": o.sim_steps}})
    off = _offsets(res)
    for iv in res.intervals:
        t0 = iv.start + off.get(iv.op_index, 0.0)
        ev.append({"name": f"{res.ops[iv.op_index].name}:{iv.what}", "cat": iv.what, "ph": "X", "pid": pid,
                   "tid": tids[iv.resource], "ts": t0 * us, "dur": (iv.end - iv.start) * us,
                   "args": {"step": iv.step, "start_cycle": t0, "cycles": iv.end - iv.start}})
    return {
        "traceEvents": ev,
        "displayTimeUnit": "ns",
        "otherData": {"graph": res.schedule.graph_name, "stage": res.schedule.stage,
                      "frequency_hz": res.frequency_hz, "total_cycles": res.cycles},
    }


def write_chrome_trace(res: GraphSimResult, path: str | Path, **kw) -> Path:
    """Write the Chrome trace JSON to ``path`` (opens in https://ui.perfetto.dev)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(chrome_trace(res, **kw)))
    return p


def validate_chrome_trace(obj: dict) -> None:
    """Raise ``ValueError`` unless ``obj`` is a Trace Event Format object with well-formed events."""
    if not isinstance(obj, dict) or not isinstance(obj.get("traceEvents"), list):
        raise ValueError("trace must be an object with a 'traceEvents' list")
    for i, e in enumerate(obj["traceEvents"]):
        for key in ("name", "ph", "pid", "tid"):
            if key not in e:
                raise ValueError(f"event {i} lacks {key!r}")
        if e["ph"] == "X":
            for key in ("ts", "dur"):
                if not isinstance(e.get(key), (int, float)) or e[key] < 0:
                    raise ValueError(f"complete event {i} needs a number {key!r} >= 0")
        elif e["ph"] != "M":
            raise ValueError(f"event {i}: unexpected phase {e['ph']!r}")


_COLORS = {"linear": "#4c72b0", "attention": "#dd8452", "sfu": "#55a868", "embedding": "#8172b3",
           "load": "#4c72b0", "store": "#c44e52", "compute": "#55a868"}


def gantt_png(res: GraphSimResult, path: str | Path, *, window: Optional[tuple[float, float]] = None,
              title: Optional[str] = None) -> Path:
    """Gantt chart of the lanes in ``LANES`` as a PNG.

    ``window`` = (start, end) in cycles; default: from the pass start to the end of the first
    repetition of the first repeated block (embedding + one decoder layer), where busy intervals
    exist. Time axis in microseconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    inst = list(res.instances())
    if window is None:
        first_rep_end = None
        for k, rep, t0, t1 in inst:
            if rep == 1:
                break
            first_rep_end = t1
        window = (0.0, first_rep_end or res.cycles)
    w0, w1 = window
    us = 1e6 / res.frequency_hz
    lanes = [ln for ln in LANES if ln == "ops" or any(iv.resource == ln for iv in res.intervals)]
    fig, ax = plt.subplots(figsize=(14, 1.0 + 0.7 * len(lanes)))
    ylab = {ln: i for i, ln in enumerate(reversed(lanes))}
    for k, rep, t0, t1 in inst:
        if t1 < w0 or t0 > w1:
            continue
        o = res.ops[k]
        y = ylab["ops"]
        ax.broken_barh([(t0 * us, (t1 - t0) * us)], (y - 0.4, 0.8), facecolors=_COLORS.get(o.kind, "grey"),
                       edgecolor="white", linewidth=0.3)
        if (t1 - t0) > 0.04 * (w1 - w0):
            ax.text((t0 + t1) / 2 * us, y, o.name.replace("layer.", ""), ha="center", va="center", fontsize=7,
                    color="white", clip_on=True)
    off = _offsets(res)
    by_lane: dict = {}
    for iv in res.intervals:
        t0 = iv.start + off.get(iv.op_index, 0.0)
        t1 = t0 + (iv.end - iv.start)
        if t1 < w0 or t0 > w1 or iv.resource not in ylab:
            continue
        by_lane.setdefault((iv.resource, iv.what), []).append((t0 * us, (t1 - t0) * us))
    for (lane, what), bars in by_lane.items():
        y = ylab[lane]
        ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=_COLORS[what], linewidth=0)
    ax.set_yticks(list(ylab.values()))
    ax.set_yticklabels(list(ylab.keys()))
    ax.set_xlim(w0 * us, w1 * us)
    ax.set_xlabel("time (µs)")
    ax.set_title(title or f"{res.schedule.graph_name}: cycle model timeline (first layer)")
    handles = [Patch(color=_COLORS[k], label=k) for k in ("linear", "attention", "sfu", "embedding")]
    handles += [Patch(color=_COLORS[k], label=f"{k} (resource lanes)") for k in ("load", "store", "compute")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=7, fontsize=8, frameon=False)
    fig.tight_layout()
    from qesim.report.figures import save_figure

    return save_figure(fig, Path(path), dpi=110)
