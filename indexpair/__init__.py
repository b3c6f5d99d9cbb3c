"""indexpair: promote an embedding model and its vector index as one Model-Index Pair."""

__version__ = "0.1.0"
