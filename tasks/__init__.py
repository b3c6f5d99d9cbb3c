"""Prefect tasks, one module per stage or external system. Each wraps plain functions."""
