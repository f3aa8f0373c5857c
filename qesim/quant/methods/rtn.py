"""RTN: round-to-nearest weights with the setting's quantizer (quantizer-facts §1); activations
dynamic per-token at A bits."""

from __future__ import annotations

from qesim.quant.methods import BlockContext, make_qlinear


def quantize_block(ctx: BlockContext):
    return {n: make_qlinear(ctx, n, info={"method": "rtn"}) for n in ctx.linears}
