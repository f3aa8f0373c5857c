"""qesim: NPU accelerator performance simulator and cycle model for quantized (vision-)language
models, built around the Quant Experts (QE) method.

Pipeline: quant -> export -> graph; graph + hw -> perf (analytical) / sim (cycle) -> report.

Public API (see :mod:`qesim.api` and the README's "Python API" section)::

    import qesim
    r = qesim.estimate("qwen2vl-7b", "flightllm-u280", setting="W4A8", method="qe", stage="decode")
    r.latency_s, r.tokens_per_s, r.bound, r.speedup_vs_fp16, r.ops, r.to_dict()
    qesim.load_hw("flightllm-u280"); qesim.build_graph("llama3-8b/", stage="decode")
    qesim.sweep("space.yaml"); qesim.presets()

The names are imported on first use, so ``import qesim`` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["estimate", "load_hw", "build_graph", "sweep", "presets", "Estimate", "InputError", "__version__"]


def __getattr__(name: str):
    if name in ("estimate", "load_hw", "build_graph", "sweep", "presets", "Estimate"):
        from qesim import api

        return getattr(api, name)
    if name == "InputError":
        from qesim.errors import InputError

        return InputError
    raise AttributeError(f"module 'qesim' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
