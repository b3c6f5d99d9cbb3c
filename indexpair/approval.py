"""What an approval is bound to: one build, its model, its source and the report shown.

The approval form carries these fields (filled in when the run asks); after resume the
run compares them with the build it holds. An approval given for one build therefore
never promotes another, whatever changed in between (a moved ``staging`` alias, a
redeployed worker, lost task caches).
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel


class ApprovalBinding(BaseModel):
    """The identity of the build a person approves."""

    candidate: str
    model_name: str
    model_version: str
    source_fingerprint: str
    report_digest: str

    def digest(self) -> str:
        """A short stable digest of the whole binding (names the approval form)."""
        text = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def report_digest(report_json: str) -> str:
    """``sha256:<hex>`` of the validation report as recorded on the candidate."""
    return "sha256:" + hashlib.sha256(report_json.encode()).hexdigest()


def mismatches(expected: ApprovalBinding, given: dict[str, object]) -> list[str]:
    """Fields of an approval input that differ from the build, as readable lines."""
    return [
        f"{field} is {given.get(field)!r}, the build has {value!r}"
        for field, value in expected.model_dump().items()
        if str(given.get(field, "")) != value
    ]
