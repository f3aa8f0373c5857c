"""Discrete-event (simpy) cycle model replaying the analytical schedule."""
