"""Fitting config fields to measured latencies: log-space bounded least squares, identifiability,
cross-validation.

A *predictor* is a function ``predict(values, idx) -> seconds`` giving the predicted latency of the
measured kernels ``idx`` (an index array) when the config fields ``values`` (dotted path -> number,
e.g. ``{'terms.linear.fixed_us': 20.0}``) replace the config's own. :func:`fit` minimises
``sum_i (log predicted_i - log measured_i)^2`` over the fields within their bounds
(``scipy.optimize.least_squares``, trust-region reflective), so every kernel weighs by its relative
error whatever its size.

It refuses to fit more parameters than the data supports: fewer than ``min_points_per_param``
kernels per parameter is an error; a parameter the data does not constrain at the solution (its
Jacobian column vanishes or is linearly dependent on the others, numerical rank of the Jacobian)
is set back to its neutral value and the fit repeated without it; the result says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from qesim.errors import InputError


@dataclass(frozen=True)
class Param:
    """One fitted config field: dotted ``path``, bounds, start value, and the neutral value it takes
    when the data does not identify it (the value that leaves today's model unchanged)."""

    path: str
    lo: float
    hi: float
    init: float
    neutral: float
    unit: str = ""


def class_params(op_class: str) -> list[Param]:
    """The parameters fitted for an op class (few per class; see ``HardwareConfig.terms``), most
    important first: when the data cannot tell two of them apart the later one is set neutral.

    MPE classes (linear, attention): fixed cost, compute efficiency, memory efficiency, K roll-off,
    host floor. Vector classes: fixed cost, memory efficiency, host floor (their SFU time and their
    traffic both grow with the element count, so an SFU efficiency would be a second name for the
    memory efficiency)."""
    base = f"terms.{op_class}"
    fixed = Param(f"{base}.fixed_us", 0.0, 1000.0, 10.0, 0.0, "us")
    floor = Param(f"{base}.floor_us", 0.0, 1000.0, 1.0, 0.0, "us")
    mem = Param(f"{base}.memory_efficiency", 0.02, 1.0, 0.7, 1.0)
    if op_class in ("linear", "attention"):
        return [fixed, Param(f"{base}.compute_efficiency", 0.02, 1.0, 0.8, 1.0), mem,
                Param(f"{base}.k_half", 0.0, 8192.0, 16.0, 0.0, "elements"), floor]
    return [fixed, mem, floor]


def data_params(op_class: str, measured_s) -> list[Param]:
    """:func:`class_params` with start values from the data: the floor starts at 0.9 x and the fixed
    cost at 0.5 x the fastest measured call (a parameter whose gradient is zero at its start would
    never move)."""
    from dataclasses import replace

    t_min_us = float(np.min(measured_s)) * 1e6
    out = []
    for p in class_params(op_class):
        if p.path.endswith(".floor_us"):
            p = replace(p, init=min(p.hi, 0.9 * t_min_us))
        elif p.path.endswith(".fixed_us"):
            p = replace(p, init=min(p.hi, 0.5 * t_min_us))
        out.append(p)
    return out


@dataclass
class FitResult:
    values: dict  # path -> fitted value (identified parameters only)
    neutral: dict  # path -> neutral value of the parameters the data did not identify
    n_points: int
    residuals: np.ndarray  # log(predicted / measured) per point, at the solution
    notes: list = field(default_factory=list)

    @property
    def all_values(self) -> dict:
        return {**self.neutral, **self.values}

    @property
    def rms_log(self) -> float:
        return float(np.sqrt(np.mean(self.residuals ** 2)))

    @property
    def abs_err(self) -> np.ndarray:
        """|predicted / measured - 1| per point."""
        return np.abs(np.exp(self.residuals) - 1.0)


def _rank_drop(jac: np.ndarray, rtol: float) -> Optional[int]:
    """Index of the least identified column, or None if the Jacobian has full column rank."""
    norms = np.linalg.norm(jac, axis=0)
    top = norms.max() if norms.size else 0.0
    if top == 0.0:
        return 0 if jac.shape[1] else None
    if norms.min() <= rtol * top:
        return int(np.argmin(norms))
    scaled = jac / norms  # rank of the column-normalised Jacobian
    _, s, vt = np.linalg.svd(scaled, full_matrices=False)
    if s[-1] > rtol * s[0]:
        return None
    w = np.abs(vt[-1])  # the columns that span the null direction; drop the last-listed (least important) one
    return int(np.flatnonzero(w > 0.3 * w.max())[-1])


def fit(predict: Callable, params: Sequence[Param], measured_s: np.ndarray, idx: np.ndarray, *,
        min_points_per_param: int = 3, rtol: float = 1e-4, fixed: Optional[dict] = None,
        what: str = "data") -> FitResult:
    """Fit ``params`` to the measured latencies ``measured_s[idx]`` (seconds); ``fixed``: other
    config fields held at given values during the fit. See the module docstring."""
    from scipy.optimize import least_squares

    idx = np.asarray(idx)
    meas = np.asarray(measured_s, dtype=float)[idx]
    params = list(params)
    if len(idx) < min_points_per_param * len(params):
        raise InputError(f"{what}: refusing to fit {len(params)} parameters to {len(idx)} measurements "
                         f"(at least {min_points_per_param} per parameter needed: "
                         f"{min_points_per_param * len(params)})")
    fixed = dict(fixed or {})
    neutral: dict = {}
    notes: list = []
    x0 = None
    while True:
        live = [p for p in params if p.path not in neutral]
        base = {**fixed, **neutral}

        def resid(x, live=live, base=base):
            vals = {**base, **{p.path: float(v) for p, v in zip(live, x)}}
            return np.log(np.asarray(predict(vals, idx), dtype=float) / meas)

        if not live:
            return FitResult({}, neutral, len(idx), resid(np.array([])), notes)
        start = np.array([p.init for p in live]) if x0 is None else np.array(
            [x0.get(p.path, p.init) for p in live])
        start = np.clip(start, [p.lo for p in live], [p.hi for p in live])
        jac = "2-point"
        many = getattr(predict, "many", None)
        if many is not None:  # finite differences as design points of one vectorised call
            lo_b, hi_b = np.array([p.lo for p in live]), np.array([p.hi for p in live])

            def jac(x, live=live, base=base):
                h = np.sqrt(np.finfo(float).eps) * np.maximum(1.0, np.abs(x))
                step = np.where(x + h > hi_b, -h, h)
                rows = [{**base, **{p.path: float(v) for p, v in zip(live, x)}}]
                for j in range(len(live)):
                    xj = x.copy()
                    xj[j] += step[j]
                    rows.append({**base, **{p.path: float(v) for p, v in zip(live, xj)}})
                lp = np.log(np.asarray(many(rows, idx), dtype=float))
                return ((lp[1:] - lp[0]) / step[:, None]).T

        sol = least_squares(resid, start, bounds=([p.lo for p in live], [p.hi for p in live]),
                            x_scale="jac", method="trf", jac=jac)
        drop = _rank_drop(np.asarray(sol.jac), rtol)
        if drop is None:
            vals = {p.path: float(v) for p, v in zip(live, sol.x)}
            return FitResult(vals, neutral, len(idx), np.asarray(sol.fun), notes)
        p = live[drop]
        neutral[p.path] = p.neutral
        notes.append(f"{p.path}: not identified by the data (fitted {sol.x[drop]:.4g}); set to neutral {p.neutral:g}")
        x0 = {q.path: float(v) for q, v in zip(live, sol.x)}


# ----------------------------------------------------------------------------- cross-validation
def kfold(order: np.ndarray, k: int) -> list[np.ndarray]:
    """``k`` test folds that interleave along ``order`` (e.g. kernels sorted by size): fold j holds
    positions j, j+k, j+2k, ... so that every fold spans the whole range."""
    order = np.asarray(order)
    k = max(2, min(int(k), len(order)))
    return [order[j::k] for j in range(k)]


def by_family(families: np.ndarray, idx: np.ndarray) -> list[np.ndarray]:
    """One test fold per family (leave-one-family-out)."""
    fam = np.asarray(families)[idx]
    return [idx[fam == f] for f in dict.fromkeys(fam)]


def cross_validate(predict: Callable, params: Sequence[Param], measured_s: np.ndarray, idx: np.ndarray,
                   folds: list[np.ndarray], **kw) -> tuple[np.ndarray, list]:
    """Out-of-sample predictions: each fold predicted by a fit on the other points of ``idx``.

    Returns (predicted seconds aligned with ``idx`` (NaN where a fold could not be fitted), notes)."""
    idx = np.asarray(idx)
    pos = {int(i): j for j, i in enumerate(idx)}
    out = np.full(len(idx), np.nan)
    notes = []
    for f_no, test in enumerate(folds):
        train = np.array([i for i in idx if i not in set(test.tolist())])
        try:
            res = fit(predict, params, measured_s, train, what=f"fold {f_no}", **kw)
        except InputError as e:
            notes.append(str(e))
            continue
        pred = np.asarray(predict(res.all_values, np.asarray(test)), dtype=float)
        for i, p in zip(test, pred):
            out[pos[int(i)]] = p
    return out, notes
