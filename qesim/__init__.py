"""qesim: NPU accelerator performance simulator and cycle model for quantized (vision-)language
models, built around the Quant Experts (QE) method.

Pipeline: quant -> export -> graph; graph + hw -> perf (analytical) / sim (cycle) -> report.
"""

__version__ = "0.1.0"
