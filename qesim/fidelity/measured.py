"""Measured kernel latencies -> one table (pandas DataFrame, one row per kernel).

Accepted inputs (a file or a directory of them):

- LLMCompass's real-hardware CSVs as they are (``ae/figure5/*/real_hardware/``; see
  ``shared/reference/measured/llmcompass/README.md``), recognised by file name
  ``{matmul,softmax,layernorm,gelu}_<DEVICE>.csv``, no header:
  ``matmul``: M, N, K, "<t>ms", "<x>Tflops"; ``softmax``/``layernorm``: M, N, G elements/s
  (latency = M*N / (G*1e9) s); ``gelu``: n, G elements/s (latency = n / (G*1e9) s).
- A headed CSV with columns ``kernel,M,N,K,latency_us`` (``K`` empty for vector kernels; gelu
  uses ``M`` = n) and optional ``device``, ``family``.

Columns of the table: ``device, kernel, op_class, family, M, N, K, elements, latency_s, source``
(``source`` = file:line). ``family`` groups the rows of one sweep (the dimensions held fixed),
used by leave-one-family-out cross-validation.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from qesim.errors import InputError

KERNELS = ("matmul", "softmax", "layernorm", "gelu")
#: measured kernel -> op class of HardwareConfig.terms
KERNEL_CLASS = {"matmul": "linear", "softmax": "softmax", "layernorm": "norm", "gelu": "elementwise"}
_NAME_RE = re.compile(r"^(matmul|softmax|layernorm|gelu)_([A-Za-z0-9.\-]+)\.csv$", re.IGNORECASE)
_COLUMNS = ("device", "kernel", "op_class", "family", "M", "N", "K", "elements", "latency_s", "source")


def _num(text: str, where: str, what: str, unit: str = "") -> float:
    t = text.strip().strip('"')
    if unit and t.lower().endswith(unit.lower()):
        t = t[: -len(unit)]
    try:
        v = float(t)
    except ValueError:
        raise InputError(f"{where}: {what} is not a number (got {text.strip()!r})") from None
    if not v > 0 or v != v or v == float("inf"):
        raise InputError(f"{where}: {what} must be a positive finite number (got {text.strip()!r})")
    return v


def _dim(text: str, where: str, what: str) -> int:
    v = _num(text, where, what)
    if v != int(v):
        raise InputError(f"{where}: {what} must be an integer (got {text.strip()!r})")
    return int(v)


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file") from None
    out = []
    for i, row in enumerate(csv.reader(text.splitlines()), start=1):
        if row and any(c.strip() for c in row):
            out.append((i, row))
    if not out:
        raise InputError(f"{path}: no measurements in the file")
    return out


def _llmcompass(path: Path, kernel: str, device: str) -> list[dict]:
    recs = []
    want = {"matmul": 5, "softmax": 3, "layernorm": 3, "gelu": 2}[kernel]
    for line, row in _rows(path):
        where = f"{path}:{line}"
        if len(row) != want:
            raise InputError(f"{where}: a {kernel} row of an LLMCompass CSV has {want} columns, found {len(row)} "
                             f"(see shared/reference/measured/llmcompass/README.md)")
        if kernel == "matmul":
            M, N, K = (_dim(row[j], where, d) for j, d in enumerate("MNK"))
            lat = _num(row[3], where, "latency", "ms") * 1e-3
            elements = M * N
        elif kernel in ("softmax", "layernorm"):
            M, N, K = _dim(row[0], where, "M"), _dim(row[1], where, "N"), 0
            elements = M * N
            lat = elements / (_num(row[2], where, "G elements/s") * 1e9)
        else:
            M, N, K = _dim(row[0], where, "n"), 1, 0
            elements = M
            lat = elements / (_num(row[1], where, "G elements/s") * 1e9)
        recs.append(dict(device=device, kernel=kernel, op_class=KERNEL_CLASS[kernel], M=M, N=N, K=K,
                         elements=elements, latency_s=lat, source=where))
    return recs


def _headed(path: Path) -> list[dict]:
    rows = _rows(path)
    header = [c.strip() for c in rows[0][1]]
    need = {"kernel", "M", "N", "latency_us"}
    if not need <= set(header):
        raise InputError(f"{path}: not a measured-kernel CSV: expected an LLMCompass file name "
                         f"({'|'.join(KERNELS)}_<DEVICE>.csv) or a header with columns kernel,M,N,K,latency_us "
                         f"(found {','.join(header) or 'nothing'})")
    ix = {c: i for i, c in enumerate(header)}
    recs = []
    for line, row in rows[1:]:
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise InputError(f"{where}: {len(row)} columns, the header has {len(header)}")
        k = row[ix["kernel"]].strip().lower()
        if k not in KERNELS:
            raise InputError(f"{where}: unknown kernel {k!r}; known: {', '.join(KERNELS)}")
        M, N = _dim(row[ix["M"]], where, "M"), _dim(row[ix["N"]], where, "N")
        kk = row[ix["K"]].strip() if "K" in ix else ""
        K = _dim(kk, where, "K") if kk else 0
        if k == "matmul" and not K:
            raise InputError(f"{where}: a matmul needs K")
        rec = dict(device=row[ix["device"]].strip() if "device" in ix else path.stem, kernel=k,
                   op_class=KERNEL_CLASS[k], M=M, N=N, K=K, elements=M * N if k != "gelu" else M,
                   latency_s=_num(row[ix["latency_us"]], where, "latency_us") * 1e-6, source=where)
        if "family" in ix and row[ix["family"]].strip():
            rec["family"] = row[ix["family"]].strip()
        recs.append(rec)
    if not recs:
        raise InputError(f"{path}: header but no measurements")
    return recs


def _families(recs: list[dict]) -> None:
    """Name each run of consecutive rows of one kernel that holds the same dimensions fixed."""
    i = 0
    while i < len(recs):
        if "family" in recs[i]:
            i += 1
            continue
        dims = ["M"] if recs[i]["kernel"] == "gelu" else [d for d in "MNK" if recs[i][d]]
        j = i + 1
        fixed = [d for d in dims if j < len(recs) and recs[j]["kernel"] == recs[i]["kernel"]
                 and recs[j][d] == recs[i][d]]
        while (j < len(recs) and recs[j]["kernel"] == recs[i]["kernel"] and "family" not in recs[j]
               and all(recs[j][d] == recs[i][d] for d in fixed)
               and (fixed or j == i + 1 or len(dims) == 1)):
            j += 1
        name = recs[i]["kernel"] + ("[" + ",".join(f"{d}={recs[i][d]}" for d in fixed) + "]" if fixed else "")
        for r in recs[i:j]:
            r["family"] = name
        i = j


def read_measured(path: str | Path):
    """Measured kernels of a file or a directory of files (see the module docstring) as a DataFrame."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: measured file or directory not found")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".csv") if p.is_dir() else [p]
    if not files:
        raise InputError(f"{p}: no .csv files in the directory")
    recs: list[dict] = []
    for f in files:
        m = _NAME_RE.match(f.name)
        got = _llmcompass(f, m.group(1).lower(), m.group(2)) if m else _headed(f)
        _families(got)
        recs.extend(got)
    return pd.DataFrame.from_records(recs, columns=list(_COLUMNS))
