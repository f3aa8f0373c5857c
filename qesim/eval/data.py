"""Evaluation / calibration text: CPython's ``pydoc_data.topics`` (ships with Python, PSF licence).

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
