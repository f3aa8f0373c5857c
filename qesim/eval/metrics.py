"""Accuracy metrics: perplexity, sentence-embedding cosine, per-block relative output error."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from qesim.quant.calib import Calibration
from qesim.quant.model_utils import get_arch, run_block


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token NLL) over every position of every row of ``ids`` [N, L]."""
    nll, n = 0.0, 0
    for i in range(0, len(ids), batch_size):
        b = ids[i : i + batch_size]
        lg = model(input_ids=b, use_cache=False).logits[:, :-1].float()
        nll += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b[:, 1:].reshape(-1), reduction="sum").item()
        n += b[:, 1:].numel()
    return math.exp(nll / n)


@torch.no_grad()
def chunk_nll(model: nn.Module, ids: torch.Tensor, batch_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chunk next-token NLL: ``(nll [N] float64 summed over the chunk's positions, tokens [N])``
    for ``ids [N, L]``; ``exp(nll.sum() / tokens.sum())`` is :func:`perplexity`."""
    out = []
    for i in range(0, len(ids), batch_size):
        b = ids[i : i + batch_size]
        lg = model(input_ids=b, use_cache=False).logits[:, :-1].float()
        nll = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b[:, 1:].reshape(-1), reduction="none")
        out.append(nll.view(b.shape[0], -1).double().sum(1))
    nll = torch.cat(out)
    return nll, torch.full_like(nll, ids.shape[1] - 1)


def encoder_batches(tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 128):
    return [dict(tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                           return_tensors="pt")) for i in range(0, len(texts), batch_size)]


@torch.no_grad()
def embed(model: nn.Module, batches: list[dict]) -> torch.Tensor:
    """Mean-pooled (attention mask), L2-normalised sentence embeddings."""
    out = []
    for b in batches:
        h = model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        out.append(F.normalize((h * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out)


class BlockErrorProbe:
    """Per-block relative output error on held-out tokens.

    Every block is fed the FP model's own inputs for that block (so the error is the block's
    local error, not accumulated), and ``err_i = ||f_q(x) - f(x)|| / ||f(x) - x||`` over valid
    tokens: the error relative to the block's residual update.
    """

    def __init__(self, fp_model: nn.Module, batches: list[dict]):
        self.cal = Calibration.build(fp_model, batches, keep_linear_inputs=False)
        arch = get_arch(fp_model)
        last, _, _ = run_block(arch.blocks[-1], self.cal.block_inputs[-1])
        self.fp_out = [self.cal.block_inputs[i + 1] for i in range(arch.num_blocks - 1)] + [last]

    @torch.no_grad()
    def errors(self, qmodel: nn.Module) -> list[float]:
        arch = get_arch(qmodel)
        errs = []
        for i in range(arch.num_blocks):
            ins = self.cal.block_inputs[i]
            outs, _, _ = run_block(arch.blocks[i], ins)
            num = den = 0.0
            for x, yq, y in zip(ins, outs, self.fp_out[i]):
                m = x.tokens
                num += float((yq.hidden - y.hidden)[m].pow(2).sum())
                den += float((y.hidden - x.hidden)[m].pow(2).sum())
            errs.append(math.sqrt(num / max(den, 1e-30)))
        return errs
