"""The cost model, written once over arrays of design points (see README, "Layout": where op kinds, engines and terms go)."""
