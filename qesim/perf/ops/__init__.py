"""Op lowerings, one module per op kind (each registers itself with ``@lowering(kind)``).

To add an op kind: add its IR class in :mod:`qesim.graph.ir`, then a module here with a
:class:`~qesim.perf.ops.base.Lowered` subclass and a ``@lowering("kind")`` factory, and import
the module below.
"""

from qesim.perf.ops import attention, embedding, linear, moe, sfu  # noqa: F401
from qesim.perf.ops.base import Lowered, OpCost, lower, lowering  # noqa: F401
