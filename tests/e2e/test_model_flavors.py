"""Users' own MLflow models through the real worker: promote, search, refresh.

all-MiniLM-L6-v2 is logged as each supported kind (``tests/support/byo_models.py``): the
``sentence_transformers`` flavor with E5-style query/document prompts, the
``transformers`` flavor (feature extraction, mean pooling) and a custom pyfunc model
from code (named text column, list output, prompts in its metadata). Each is promoted,
searched through the alias (one kind also refreshed), and the built pair's recall is compared with
exact search by the same model, encoded here by sentence-transformers directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deployments.promotions import promotion_parameters, refresh_parameters, start_promotion
from indexpair.documents import document_texts
from indexpair.gateways.milvus import VECTOR_FIELD, MilvusGateway
from indexpair.serving.consistency import ConsistencyChecker
from indexpair.serving.query import PairSearcher
from indexpair.settings import Settings
from tasks.source import SourceSpec
from tasks.validation import load_golden
from tests.conftest import BYO_MODEL, DATA_DIR
from tests.e2e.conftest import SMALL_POLICY, decide
from tests.e2e.test_refresh import _edited_source
from tests.support.byo_models import DOCUMENT_PROMPT, QUERY_PROMPT, minilm_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
GOLDEN = str(DATA_DIR / "golden_queries_small.json")
SOURCE = DATA_DIR / "products_small.parquet"
PROMPTS = {
    "sentence_transformers": (QUERY_PROMPT, DOCUMENT_PROMPT),
    "transformers": ("", ""),
    "python_function": (QUERY_PROMPT, DOCUMENT_PROMPT),
}


@pytest.fixture(scope="module")
def reference():  # type: ignore[no-untyped-def]
    """The same model, run by sentence-transformers itself: the exact-search reference."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_dir(), device="cpu")


def _encode(model, texts: list[str], prompt: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    return model.encode(
        [prompt + t for t in texts], normalize_embeddings=True, show_progress_bar=False
    )


def _docs(path: Path) -> tuple[list[str], list[str]]:
    df = pd.read_parquet(path)
    fields = SourceSpec(uri=str(path)).text_fields
    return [str(i) for i in df["id"]], document_texts({f: df[f] for f in fields}, fields)


@pytest.mark.parametrize("flavor", sorted(PROMPTS))
def test_a_users_model_is_promoted_searched_and_refreshed(
    stack_settings: Settings,
    byo_versions: dict[str, str],
    reference,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    flavor: str,
) -> None:
    settings, version = stack_settings, byo_versions[flavor]
    alias = f"byo_{flavor}"
    query_prompt, document_prompt = PROMPTS[flavor]
    params = promotion_parameters(BYO_MODEL, str(SOURCE), GOLDEN, version, alias)
    snap = start_promotion(settings, params | {"validation": SMALL_POLICY}, 600)
    assert decide(settings, snap, approve=True)["state_type"] == "COMPLETED", snap

    with MilvusGateway(settings) as milvus:
        built = milvus.alias_target(alias)
        assert built is not None
        pair = milvus.read_pair(built)
    assert (pair.model_flavor, pair.metric, pair.dim) == (flavor, "COSINE", 384)
    assert (pair.query_prompt, pair.document_prompt) == (query_prompt, document_prompt)

    # Recall@10 of the built pair against exact search with the same model and prompts.
    ids, texts = _docs(SOURCE)
    doc_vectors = _encode(reference, texts, document_prompt)
    queries = [q.query for q in load_golden(GOLDEN).queries]
    exact = np.argsort(-_encode(reference, queries, query_prompt) @ doc_vectors.T, axis=1)
    recalls = []
    with PairSearcher(settings, alias) as searcher, ConsistencyChecker(settings) as checker:
        for query, row in zip(queries, exact, strict=True):
            response = searcher.search(query, 10)
            assert response.collection == built
            hits = [(h.id, h.score) for h in response.hits]
            verdict = checker.check(query, built, BYO_MODEL, version, hits)
            assert verdict.ok, verdict.detail
            truth = {ids[i] for i in row[:10]}
            recalls.append(len(truth & {h for h, _ in hits}) / 10)
    assert np.mean(recalls) >= 0.95, recalls

    if flavor == "sentence_transformers":
        _refresh_embeds_with_the_document_prompt(settings, alias, built, reference, tmp_path)


def _refresh_embeds_with_the_document_prompt(
    settings: Settings,
    alias: str,
    built: str,
    reference,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """Only the changed rows are embedded again, with the same document prompt.

    One kind is enough: a refresh loads and encodes through the same code as the
    promotion above, which each kind went through.
    """
    source, _ = _edited_source(tmp_path)
    refresh = refresh_parameters(str(source), GOLDEN, alias, True) | {"validation": SMALL_POLICY}
    snap = start_promotion(settings, refresh, 600, deployment="refresh/weekly")
    if snap["state_type"] == "PAUSED":  # a metric moved: a person decides
        snap = decide(settings, snap, approve=True)
    assert snap["state_type"] == "COMPLETED", snap
    new_ids, new_texts = _docs(source)
    added = [i for i, x in enumerate(new_ids) if x.startswith("NEW")]
    with MilvusGateway(settings) as milvus:
        refreshed = milvus.alias_target(alias)
        assert refreshed not in (None, built)
        stored = milvus.fetch(refreshed, [new_ids[i] for i in added])
    expected = _encode(reference, [new_texts[i] for i in added], DOCUMENT_PROMPT)
    got = np.array([stored[new_ids[i]][VECTOR_FIELD] for i in added], dtype=np.float32)
    assert len(got) == 15
    cosine = np.sum(expected * got, axis=1) / np.linalg.norm(got, axis=1)
    assert cosine.min() > 0.999, cosine
