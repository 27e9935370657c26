"""Selective Reflection-Tuning as a Dagster asset graph."""
