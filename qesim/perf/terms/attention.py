"""Off-chip traffic of unfused attention (``policy.attention_fused: false``).

Fused (FlashAttention-style) attention keeps the score matrix on chip. Unfused, QK^T writes the
scores, softmax reads them and writes the probabilities, and PV reads those: three ops, each
with its own fixed cost (op classes 'attention' for QK^T and PV, 'softmax' for the softmax).
Bytes per call; ``scores`` is the number of (query, key) pairs per head that are computed.
"""

from __future__ import annotations

import numpy as np


def unfused_attention_bytes(batch, heads, scores, score_bits=16):
    """Bytes of the score matrix per op of unfused attention:
    ``{'qk_store', 'softmax_load', 'softmax_store', 'pv_load'}``, each batch * heads * scores *
    score_bits / 8."""
    s = np.asarray(batch, dtype=float) * np.asarray(heads, dtype=float) * np.asarray(scores, dtype=float) \
        * np.asarray(score_bits, dtype=float) / 8.0
    return {"qk_store": s, "softmax_load": s, "softmax_store": s, "pv_load": s}
