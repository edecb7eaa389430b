"""Feast declarations for the platform's tasks (no logic: the tables are built by Dagster assets)."""
