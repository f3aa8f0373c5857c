"""Hardware config schema and loader (presets = hw_configs/*.yaml)."""
