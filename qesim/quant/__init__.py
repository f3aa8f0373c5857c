"""Torch quantization core: primitives, methods (RTN ... QE), calibration, export to graph."""
