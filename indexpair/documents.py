"""The document rule: which text a row embeds, and the hash stored with its vector.

Kept free of Prefect and Ray imports: Ray's embedding actors import it.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

TEXT_JOIN = ". "


def document_texts(batch: pa.RecordBatch | dict, text_fields: list[str]) -> list[str]:
    """The text embedded for each row: the text fields joined with '. '."""
    columns = [
        [
            str(v)
            for v in (
                batch.column(f).to_pylist() if isinstance(batch, pa.RecordBatch) else list(batch[f])
            )
        ]
        for f in text_fields
    ]
    return [TEXT_JOIN.join(parts) for parts in zip(*columns, strict=True)]


def content_hash(text: str) -> str:
    """Hash of the embedded text, stored per row so refreshes can skip unchanged rows."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
