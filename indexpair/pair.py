"""The pair contract: names, states and the metadata a collection carries in Milvus."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from indexpair.errors import InvalidNameError, PairNotFound

PREFIX = "indexpair."
MAX_NAME_LENGTH = 255
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SLUG_RE = re.compile(r"[^A-Za-z0-9_]+")


class PairState(StrEnum):
    """Life cycle of a collection built by indexpair."""

    BUILDING = "building"
    VALIDATED = "validated"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    LIVE = "live"
    PREVIOUS = "previous"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    FAILED = "failed"


# Builds whose flow run may still finish them.
UNFINISHED = frozenset({PairState.BUILDING, PairState.VALIDATED, PairState.AWAITING_APPROVAL})
# Builds that will never serve.
FAILED_STATES = frozenset({PairState.FAILED, PairState.REJECTED})

# The recorded state changes a step of indexpair may make (reconcile may also force any
# state to match the alias truth). ``live`` is entered only through an alias switch.
TRANSITIONS: dict[PairState, frozenset[PairState]] = {
    PairState.BUILDING: frozenset(
        {PairState.VALIDATED, PairState.AWAITING_APPROVAL, PairState.REJECTED, PairState.FAILED}
    ),
    PairState.VALIDATED: frozenset(
        {PairState.AWAITING_APPROVAL, PairState.REJECTED, PairState.FAILED}
    ),
    PairState.AWAITING_APPROVAL: frozenset(
        {PairState.APPROVED, PairState.REJECTED, PairState.FAILED}
    ),
    PairState.APPROVED: frozenset({PairState.LIVE}),  # never rejected: kept for a switch
    PairState.LIVE: frozenset({PairState.PREVIOUS, PairState.ROLLED_BACK}),
    PairState.PREVIOUS: frozenset({PairState.LIVE}),
    PairState.ROLLED_BACK: frozenset({PairState.LIVE}),
    PairState.REJECTED: frozenset(),
    PairState.FAILED: frozenset(),
}


def can_move(old: PairState, new: PairState) -> bool:
    """Whether a step may record ``new`` on a pair now in ``old`` (same state: a repeat)."""
    return old == new or new in TRANSITIONS[old]


def check_name(name: str, what: str = "collection name") -> str:
    """Return ``name`` if Milvus would accept it as a collection or alias name.

    Milvus Lite accepts names that a real Milvus server rejects (``bad-name``), so the
    rule of the server is enforced here, before any call.

    Raises:
        InvalidNameError: naming the value and the rule it breaks.
    """
    if not name:
        raise InvalidNameError(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} {name!r} is {len(name)} characters; Milvus allows 255")
    if not _NAME_RE.match(name):
        raise InvalidNameError(
            f"{what} {name!r} is not a valid Milvus name: use letters, digits and '_', "
            "starting with a letter or '_'"
        )
    return name


def model_slug(model_name: str) -> str:
    """Milvus-safe form of an MLflow model name (``product-embedder`` -> ``product_embedder``)."""
    slug = _SLUG_RE.sub("_", model_name).strip("_").lower()
    if not slug:
        raise InvalidNameError(f"model name {model_name!r} has no letters or digits to name by")
    return slug if not slug[0].isdigit() else f"m_{slug}"


def collection_name(model_name: str, model_version: str, build_id: str) -> str:
    """The one naming function: ``<model>_v<version>_<build id>``."""
    if not str(model_version).isdigit():
        raise InvalidNameError(f"model version {model_version!r} is not a number")
    if not re.fullmatch(r"[a-z0-9]{4,32}", build_id):
        raise InvalidNameError(f"build id {build_id!r} must be 4-32 lowercase letters or digits")
    return check_name(f"{model_slug(model_name)}_v{model_version}_{build_id}")


def now_iso() -> str:
    """UTC timestamp as stored in collection properties."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class PairMetadata(BaseModel):
    """Pair identity, stored as ``indexpair.*`` collection properties in Milvus."""

    model_name: str
    model_version: str
    model_uri: str
    dim: int = Field(gt=0)
    metric: str = "COSINE"
    # The model contract the pair was built under: every query of this pair is encoded
    # with ``query_prompt`` (documents were, with ``document_prompt``).
    model_flavor: str = ""
    query_prompt: str = ""
    document_prompt: str = ""
    build_id: str
    source_uri: str
    source_fingerprint: str
    source_rows: int = Field(ge=0)
    state: PairState = PairState.BUILDING
    created_at: str = Field(default_factory=now_iso)
    updated_at: str = Field(default_factory=now_iso)
    flow_run_id: str = ""
    alias: str = ""
    baseline: str = ""
    reason: str = ""
    previous_since: str = ""
    live_since: str = ""
    rolled_back_since: str = ""
    # The switch that made this pair live: the collection it replaced, and whether it was
    # a promotion or a rollback (a rollback retires the replaced pair as ``rolled_back``).
    replaces: str = ""
    switch_kind: str = ""
    # What the approval is bound to, and what a later re-validation needs.
    report: str = ""
    report_digest: str = ""
    approved_by: str = ""
    golden_queries: str = ""
    validation: str = ""
    # Online evidence gathered by the search service while the pair awaits approval
    # (indexpair.serving.canary.CanaryStats as JSON).
    canary: str = ""

    def to_properties(self) -> dict[str, str]:
        """Flatten to Milvus collection properties (all values are strings)."""
        return {PREFIX + key: str(value) for key, value in self.model_dump(mode="json").items()}

    @classmethod
    def from_properties(cls, name: str, properties: dict[str, str]) -> PairMetadata:
        """Read the pair back from collection properties.

        Raises:
            PairNotFound: the collection was not created by indexpair.
        """
        values = {k[len(PREFIX) :]: v for k, v in properties.items() if k.startswith(PREFIX)}
        if "model_name" not in values:
            raise PairNotFound(f"collection {name!r} carries no indexpair pair metadata")
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise PairNotFound(f"collection {name!r} has damaged pair metadata: {exc}") from exc


def is_managed(properties: dict[str, str]) -> bool:
    """True when a collection's properties say indexpair created it."""
    return PREFIX + "model_name" in properties
