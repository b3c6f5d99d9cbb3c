"""Embedding models with one deliberate defect each, for the bad-input tests.

They wrap the real TF-IDF model (never random vectors) and break its output in one
way. The module travels with the model through MLflow's ``code_paths``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from indexpair.models.helpers import TfidfEmbedder, _as_texts

LATE_AFTER = 16


class FaultyEmbedder(TfidfEmbedder):
    """TF-IDF embeddings with a defect: ``nan``, ``short`` (drops a row) or ``zero``."""

    def __init__(self, fault: str) -> None:
        self.fault = fault

    def predict(
        self, context: Any, model_input: Any, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Real embeddings, then the defect."""
        texts = _as_texts(model_input)
        vectors = np.asarray(self.pipeline.transform(texts), dtype=np.float32)
        # "*_late" faults spare small inputs (the probe's sample) and hit real batches.
        fault = self.fault.removesuffix("_late")
        if self.fault.endswith("_late") and len(texts) <= LATE_AFTER:
            fault = ""
        if fault == "nan":
            vectors[-1, 0] = np.nan
        elif fault == "short":
            vectors = vectors[:-1]
        elif fault == "zero":
            vectors[-1, :] = 0.0
        return vectors
