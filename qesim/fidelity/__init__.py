"""Fidelity to measured hardware (issue 16): measured kernel sets, their graphs, calibration of
the cost model's fidelity terms (``HardwareConfig.terms``) and the validation report.

- :mod:`.measured` reads measured kernel latencies (LLMCompass CSVs as they are, or a headed CSV).
- :mod:`.kernels`  the one-op layer graph of each measured kernel, and the predictor that costs
  them with the cost model (``qesim.perf``).
- :mod:`.fit`      log-space bounded least squares over config fields, identifiability checks,
  cross-validation (k-fold, leave-one-family-out).
- :mod:`.calibrate` writes the calibrated hardware YAML with the data, fit and residuals as comments.
"""
