"""Accuracy runs on real models and data."""
