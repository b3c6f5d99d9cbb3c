"""Prefect flows. A flow only composes tasks and branches on their results."""
