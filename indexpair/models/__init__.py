"""Embedding models: the model contract, loading by MLflow flavor, indexpair's helpers.

* :mod:`indexpair.models.contract`: what a model must take, return and declare
  (:class:`ModelContract`, :class:`ModelCard`), and the output checks.
* :mod:`indexpair.models.loaders`: :func:`load_model` picks the loading path from the
  model's ``MLmodel`` flavors and returns an :class:`EmbeddingModel`.
* :mod:`indexpair.models.helpers`: indexpair's own pyfunc embedders and their logging.
"""

from indexpair.models.contract import SAMPLE_TEXTS, ModelCard, ModelContract, refuse
from indexpair.models.loaders import BatchThreads, EmbeddingModel, encode_queries, load_model

__all__ = [
    "SAMPLE_TEXTS",
    "BatchThreads",
    "EmbeddingModel",
    "ModelCard",
    "ModelContract",
    "encode_queries",
    "load_model",
    "refuse",
]
