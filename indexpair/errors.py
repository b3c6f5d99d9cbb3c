"""Typed errors. Each message names the value at fault."""


class IndexPairError(Exception):
    """Base class for every error indexpair raises on purpose."""


class ConfigError(IndexPairError):
    """A setting or parameter has a value that cannot work."""


class InvalidNameError(IndexPairError):
    """A collection or alias name that Milvus would reject."""


class RegistryError(IndexPairError):
    """The MLflow registry has no such model, version or alias."""


class SourceDataError(IndexPairError):
    """The source corpus is empty, malformed, or has bad ids or text."""


class SourceChangedError(SourceDataError):
    """The source no longer holds the content a build pinned by its fingerprint."""

    def __init__(self, uri: str, pinned: str, now: str) -> None:
        super().__init__(
            f"source {uri!r} changed during the build ({pinned} → {now}); start a new build"
        )
        self.uri, self.pinned, self.now = uri, pinned, now

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Prefect pickles a failed task's exception; the default would call __init__
        # with the message alone.
        return type(self), (self.uri, self.pinned, self.now)


class GoldenQueryError(IndexPairError):
    """The golden-query file is malformed or names unknown ids."""


class ModelOutputError(IndexPairError):
    """The embedding model returned vectors that cannot be indexed."""


class BuildError(IndexPairError):
    """The collection build did not produce what the source promised."""


class ValidationFailed(IndexPairError):
    """Golden-query validation rejected the candidate pair."""


class PromotionConflict(IndexPairError):
    """The production alias moved since validation (compare-and-swap refused)."""


class RollbackRefused(IndexPairError):
    """A rollback target that cannot serve the alias (wrong family, state or rows)."""


class PairNotFound(IndexPairError):
    """An alias or collection is missing or carries no pair metadata."""


class MilvusUnavailable(IndexPairError):
    """Milvus does not answer at the configured URI."""


class StackError(IndexPairError):
    """A local service failed to start, stop or answer its health check."""


class ApprovalMismatch(IndexPairError):
    """An approval names another build than the one the run holds."""


class ApprovedNotSwitched(IndexPairError):
    """A candidate was approved but the switch did not happen; it stays ``approved``."""


class ModelContractError(ModelOutputError):
    """A model version outside the model contract (what it takes, returns or declares)."""
