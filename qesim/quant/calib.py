"""Calibration capture, reusable across methods and settings.

``Calibration.build(model, batches)`` runs the FP model once, block by block, and keeps

* ``block_inputs[i]``: the FP inputs of block i (one ``BlockBatch`` per calibration mini-batch);
* ``X[i][name]``: the FP inputs of every quantized linear of block i, ``[T, in]`` float32 on
  valid tokens (linears fed by one tensor share it), if ``keep_linear_inputs``.

Every method then sees FP inputs at every block ("non-sequential", the llm-awq convention): the
quantization error of earlier blocks is not propagated into the calibration of later ones. This
lets one capture serve all 7 methods x all settings. ``quantize_model(..., sequential=True)``
instead propagates the inputs through the already-quantized blocks (GPTQ's reference
convention), at the cost of one block forward per block per run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
import torch.nn as nn

from qesim.quant.model_utils import Arch, BlockBatch, capture_block0_inputs, get_arch, run_block


@dataclass
class Calibration:
    arch: Arch
    block_inputs: list[list[BlockBatch]]
    X: list[Optional[dict[str, torch.Tensor]]]
    batch_tokens: list[int]
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return sum(self.batch_tokens)

    @classmethod
    @torch.no_grad()
    def build(cls, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
              keep_linear_inputs: bool = True, quiet: bool = True) -> "Calibration":
        """``quiet=False``: a progress bar over the blocks (:func:`qesim.progress.bar`)."""
        from qesim.progress import bar

        t0 = time.time()
        arch = get_arch(model)
        inputs = capture_block0_inputs(model, arch, batches)
        batch_tokens = [int(bb.tokens.sum()) for bb in inputs]
        block_inputs, Xs = [], []
        with bar(arch.num_blocks, "calibration capture", quiet=quiet, unit="block") as pb:
            for i in range(arch.num_blocks):
                block_inputs.append(inputs)
                lins = arch.linears(i) if keep_linear_inputs else {}
                inputs, X, _ = run_block(arch.blocks[i], inputs, capture=lins)
                Xs.append(X if keep_linear_inputs else None)
                pb.update()
        return cls(arch, block_inputs, Xs, batch_tokens, seconds=time.time() - t0)

    def linear_inputs(self, i: int, block: nn.Module, linears: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
        """FP inputs of block i's linears (cached or recomputed on ``block``, which must still be FP)."""
        if self.X[i] is not None:
            return self.X[i]
        _, X, _ = run_block(block, self.block_inputs[i], capture=linears)
        return X
