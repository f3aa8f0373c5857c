"""Evaluation / calibration text: CPython's ``pydoc_data.topics`` (ships with Python, PSF licence),
and an out-of-domain evaluation text: the licence texts in ``/usr/share/common-licenses`` (present
on every Debian/Ubuntu machine; GPL, LGPL, Apache, MPL, GFDL, Artistic, BSD, CC0 — legal prose,
unlike pydoc's technical prose).

Text = "\\n\\n".join(topics[k] for k in sorted(topics)). For causal LMs it is tokenized once
and cut into consecutive ``seq_len``-token chunks; calibration draws from the EVEN chunks and
evaluation from the ODD chunks (disjoint), each a fixed-seed random subset. For the encoder,
paragraphs (>= 12 words) are split the same way (even -> calibration, odd -> evaluation).
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def pydoc_text() -> str:
    import pydoc_data.topics as T

    return "\n\n".join(T.topics[k] for k in sorted(T.topics))


def paragraphs(min_words: int = 12) -> list[str]:
    return [p.strip() for p in pydoc_text().split("\n\n") if len(p.split()) >= min_words]


def _pick(n_avail: int, n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n_avail, generator=g)[: min(n, n_avail)]
    return sorted(idx.tolist())


def lm_splits(tokenizer, n_calib: int, n_eval: int, seq_len: int = 128, seed: int = 0):
    """Return (calib_ids [n_calib, L], eval_ids [n_eval, L]) from disjoint chunk sets."""
    ids = tokenizer(pydoc_text(), return_tensors="pt").input_ids[0]
    n = ids.numel() // seq_len
    seqs = ids[: n * seq_len].view(n, seq_len)
    even, odd = seqs[0::2], seqs[1::2]
    return even[_pick(len(even), n_calib, seed)], odd[_pick(len(odd), n_eval, seed + 1)]


def para_splits(n_calib: int, n_eval: int, seed: int = 0) -> tuple[list[str], list[str]]:
    ps = paragraphs()
    even, odd = ps[0::2], ps[1::2]
    return [even[i] for i in _pick(len(even), n_calib, seed)], [odd[i] for i in _pick(len(odd), n_eval, seed + 1)]


LICENSES_DIR = "/usr/share/common-licenses"


@lru_cache(maxsize=1)
def licenses_text(directory: str = LICENSES_DIR) -> str:
    """The regular files (not symlinks) of ``/usr/share/common-licenses``, sorted by name, joined
    by blank lines. Raises FileNotFoundError (with the path) if the directory is missing."""
    import os

    if not os.path.isdir(directory):
        raise FileNotFoundError(f"out-of-domain text: {directory} not found (Debian's base-files provides it)")
    names = sorted(n for n in os.listdir(directory)
                   if os.path.isfile(os.path.join(directory, n)) and not os.path.islink(os.path.join(directory, n)))
    parts = []
    for n in names:
        with open(os.path.join(directory, n), encoding="utf-8", errors="replace") as f:
            parts.append(f.read().strip())
    return "\n\n".join(parts)


def _chunks(tokenizer, text: str, seq_len: int) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt").input_ids[0]
    n = ids.numel() // seq_len
    return ids[: n * seq_len].view(n, seq_len)


#: the evaluation subsets do not depend on the calibration seed (so runs with different calibration
#: seeds are compared on the same chunks, paired)
EVAL_SEED = 1


def lm_calib(tokenizer, n_calib: int, seq_len: int = 128, seed: int = 0) -> torch.Tensor:
    """``n_calib`` calibration chunks from the EVEN pydoc chunks, a random subset fixed by ``seed``."""
    even = _chunks(tokenizer, pydoc_text(), seq_len)[0::2]
    return even[_pick(len(even), n_calib, seed)]


def lm_eval_sets(tokenizer, n_eval: int, n_ood: int, seq_len: int = 128) -> dict[str, torch.Tensor]:
    """Evaluation chunks: ``pydoc`` = ``n_eval`` of the ODD pydoc chunks (disjoint from any
    calibration subset), ``licenses`` = ``n_ood`` chunks of the out-of-domain licence text; both
    fixed subsets (seed :data:`EVAL_SEED`), independent of the calibration seed."""
    odd = _chunks(tokenizer, pydoc_text(), seq_len)[1::2]
    out = {"pydoc": odd[_pick(len(odd), n_eval, EVAL_SEED)]}
    if n_ood:
        lic = _chunks(tokenizer, licenses_text(), seq_len)
        out["licenses"] = lic[_pick(len(lic), n_ood, EVAL_SEED)]
    return out


def licenses_paragraphs(min_words: int = 12) -> list[str]:
    return [" ".join(p.split()) for p in licenses_text().split("\n\n") if len(p.split()) >= min_words]


def para_eval_sets(n_eval: int, n_ood: int) -> dict[str, list[str]]:
    """Encoder evaluation paragraphs: odd pydoc paragraphs and licence paragraphs (fixed subsets)."""
    odd = paragraphs()[1::2]
    out = {"pydoc": [odd[i] for i in _pick(len(odd), n_eval, EVAL_SEED)]}
    if n_ood:
        lp = licenses_paragraphs()
        out["licenses"] = [lp[i] for i in _pick(len(lp), n_ood, EVAL_SEED)]
    return out


def para_calib(n_calib: int, seed: int = 0) -> list[str]:
    even = paragraphs()[0::2]
    return [even[i] for i in _pick(len(even), n_calib, seed)]
