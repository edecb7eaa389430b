"""Prediction tasks: one package per task, holding only its domain code (the platform never imports them)."""
