"""Design-space sweeps, Pareto fronts, executors."""
