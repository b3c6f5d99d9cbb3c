"""Collection stage: create the versioned collection, finish it, check it, remove it."""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from pydantic import BaseModel

from indexpair.approval import report_digest
from indexpair.errors import BuildError, ConfigError, PairNotFound, SourceDataError
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import MlflowRegistry, ModelVersionRef
from indexpair.pair import FAILED_STATES, PairMetadata, PairState, check_name, collection_name
from indexpair.settings import Settings
from tasks.registry import ModelProbe
from tasks.source import SourceSummary
from tasks.validation import ValidationPolicy


def create(settings: Settings, name: str, meta: PairMetadata) -> None:
    """Create the collection unless this build already did (a resumed run)."""
    with MilvusGateway(settings) as milvus:
        if milvus.exists(name):
            existing = milvus.read_pair(name)
            if existing.build_id != meta.build_id:
                raise BuildError(
                    f"collection {name!r} exists and belongs to build "
                    f"{existing.build_id!r}, not {meta.build_id!r}"
                )
            return
        milvus.create_pair_collection(name, meta)


# No task caches in a build: a resumed run finds what is done in Milvus itself (each
# stage is idempotent), so neither a lost cache nor a changed setting can change it.
@task(name="create-collection", cache_policy=NO_CACHE)
def create_collection(settings: Settings, name: str, meta: PairMetadata) -> str:
    """Create the version-stamped collection with its pair properties and HNSW index."""
    create(settings, name, meta)
    get_run_logger().info("created collection %s (dim %d, %s)", name, meta.dim, meta.metric)
    return name


def finalize(settings: Settings, name: str, expected_rows: int) -> int:
    """Flush and load; the row count must equal the source's.

    Raises:
        BuildError: the counts differ.
    """
    with MilvusGateway(settings) as milvus:
        rows = milvus.finalize(name)
        if rows != expected_rows:
            raise BuildError(
                f"collection {name!r} holds {rows} rows; the source has {expected_rows}"
            )
        return rows


@task(name="finalize-collection", cache_policy=NO_CACHE)
def finalize_collection(settings: Settings, name: str, expected_rows: int) -> int:
    """Flush, load and count."""
    rows = finalize(settings, name, expected_rows)
    get_run_logger().info("collection %s loaded with %d rows", name, rows)
    return rows


def set_state(settings: Settings, name: str, state: PairState, reason: str = "") -> None:
    """Record a new pair state on the collection."""
    with MilvusGateway(settings) as milvus:
        milvus.set_state(name, state, reason)


def live_collection(settings: Settings, alias: str) -> str | None:
    """The collection the production alias points at now."""
    with MilvusGateway(settings) as milvus:
        return milvus.alias_target(alias)


@task(name="read-live-pair", cache_policy=NO_CACHE)
def read_live_pair(settings: Settings, alias: str) -> str | None:
    """The live collection at validation time: the value the swap compares against."""
    return live_collection(settings, alias)


def pair_model(settings: Settings, name: str) -> ModelVersionRef:
    """The model version a pair was built with, from its collection's metadata."""
    with MilvusGateway(settings) as milvus:
        pair = milvus.read_pair(name)
    return ModelVersionRef(name=pair.model_name, version=pair.model_version, uri=pair.model_uri)


class BuildPin(BaseModel):
    """What one flow run builds, fixed once: the candidate, its model version, its baseline.

    Read back from the candidate's own metadata in Milvus when the run resumes, so a
    resumed run builds and asks about the same thing whatever moved meanwhile (the
    ``staging`` alias, the worker's settings or code, its local disk).
    """

    name: str
    ref: ModelVersionRef
    baseline: str | None
    state: PairState | None = None
    source_fingerprint: str = ""
    report: str = ""

    @property
    def approved(self) -> bool:
        """True once a person approved it (it may have gone live since)."""
        return self.state in (
            PairState.APPROVED,
            PairState.LIVE,
            PairState.PREVIOUS,
            PairState.ROLLED_BACK,
        )

    @property
    def needs_rows(self) -> bool:
        """True until the build's rows are in (created, not yet validated)."""
        return self.state in (None, PairState.BUILDING)


def build_id_of(run_id: str) -> str:
    """The build id a flow run stamps on its collection."""
    return run_id.replace("-", "")[:12]


def find_build(gateway: MilvusGateway, run_id: str) -> tuple[str, PairMetadata] | None:
    """The collection a flow run created earlier, if any."""
    for name, pair in gateway.list_pairs():
        if pair.flow_run_id == run_id and pair.build_id == build_id_of(run_id):
            return name, pair
    return None


def pin(
    settings: Settings,
    run_id: str,
    alias: str,
    resolve: Callable[[], ModelVersionRef],
) -> BuildPin:
    """This run's build: the one it already created, else a new one of ``resolve()``.

    Raises:
        ConfigError: the run's earlier build served another alias.
    """
    with MilvusGateway(settings) as milvus:
        found = find_build(milvus, run_id)
        if found is not None:
            name, pair = found
            if pair.alias != alias:
                raise ConfigError(
                    f"flow run {run_id} built {name!r} for alias {pair.alias!r}, not {alias!r}"
                )
            if pair.state in FAILED_STATES:
                raise BuildError(
                    f"flow run {run_id}'s build {name!r} was {pair.state.value} "
                    f"({pair.reason or 'no reason recorded'}); start a new promotion"
                )
            ref = ModelVersionRef(
                name=pair.model_name, version=pair.model_version, uri=pair.model_uri
            )
            return BuildPin(
                name=name,
                ref=ref,
                baseline=pair.baseline or None,
                state=pair.state,
                source_fingerprint=pair.source_fingerprint,
                report=pair.report,
            )
        live = milvus.alias_target(alias)
    ref = resolve()
    name = collection_name(ref.name, ref.version, build_id_of(run_id))
    return BuildPin(name=name, ref=ref, baseline=live)


@task(name="pin-build", cache_policy=NO_CACHE)
def pin_build(
    settings: Settings, run_id: str, alias: str, model_name: str, model_version: str | None
) -> BuildPin:
    """Resolve the model version once: pinned on the candidate for the run's whole life."""

    def resolve() -> ModelVersionRef:
        with MlflowRegistry(settings) as registry:
            return registry.resolve_version(model_name, model_version)

    found = pin(settings, run_id, alias, resolve)
    logger = get_run_logger()
    if found.state is None:
        logger.info(
            "building %s v%s as %s (resolved by %s)",
            found.ref.name,
            found.ref.version,
            found.name,
            found.ref.resolved_by,
        )
    else:
        logger.info(
            "resuming build %s of %s v%s (pinned; state %s)",
            found.name,
            found.ref.name,
            found.ref.version,
            found.state.value,
        )
    return found


@task(name="pin-refresh", cache_policy=NO_CACHE)
def pin_refresh(settings: Settings, run_id: str, alias: str) -> BuildPin:
    """A refresh's build: same model as the live pair, pinned like a promotion's.

    Raises:
        PairNotFound: the alias has no live pair to refresh.
    """
    return pin(settings, run_id, alias, lambda: _live_model(settings, alias))


def _live_model(settings: Settings, alias: str) -> ModelVersionRef:
    live = live_collection(settings, alias)
    if live is None:
        raise PairNotFound(f"alias {alias!r} has no live pair to refresh; promote one first")
    return pair_model(settings, live)


def record_report(settings: Settings, name: str, report_json: str) -> str:
    """Store the validation report on the candidate and mark it awaiting approval.

    Returns:
        The report's digest (what the approval form is bound to).
    """
    digest = report_digest(report_json)
    with MilvusGateway(settings) as milvus:
        milvus.update_pair(
            name,
            report=report_json,
            report_digest=digest,
            state=PairState.AWAITING_APPROVAL.value,
        )
    return digest


@task(name="record-report", cache_policy=NO_CACHE)
def record_validation(settings: Settings, name: str, report_json: str) -> str:
    """Task wrapper of :func:`record_report`."""
    return record_report(settings, name, report_json)


def mark_approved(settings: Settings, name: str, approver: str) -> PairState:
    """Record the approval on a candidate that awaits it; other states stay as they are.

    Returns:
        The candidate's state now.
    """
    with MilvusGateway(settings) as milvus:
        state = milvus.read_pair(name).state
        if state == PairState.AWAITING_APPROVAL:
            milvus.update_pair(name, state=PairState.APPROVED.value, approved_by=approver)
            state = PairState.APPROVED
    return state


@task(name="mark-approved", cache_policy=NO_CACHE)
def record_approval(settings: Settings, name: str, approver: str) -> PairState:
    """Task wrapper of :func:`mark_approved`."""
    return mark_approved(settings, name, approver)


def check_pinned_source(build: BuildPin, summary: SourceSummary) -> None:
    """A resumed build must read the source it started from.

    Raises:
        SourceDataError: the source changed since the build started, naming it.
    """
    if build.source_fingerprint and build.source_fingerprint != summary.fingerprint:
        raise SourceDataError(
            f"source {summary.uri!r} changed during the build of {build.name} "
            f"({build.source_fingerprint} -> {summary.fingerprint}); start a new build"
        )


def pair_metadata(
    build: BuildPin,
    model: ModelProbe,
    summary: SourceSummary,
    alias: str,
    run_id: str,
    golden_queries: str,
    validation: ValidationPolicy,
) -> PairMetadata:
    """The pair identity a new build records on its collection."""
    return PairMetadata(
        model_name=build.ref.name,
        model_version=build.ref.version,
        model_uri=build.ref.uri,
        dim=model.dim,
        metric=model.contract.metric,
        model_flavor=model.contract.flavor,
        query_prompt=model.contract.query_prompt,
        document_prompt=model.contract.document_prompt,
        build_id=build.name.rsplit("_", 1)[1],
        source_uri=summary.uri,
        source_fingerprint=summary.fingerprint,
        source_rows=summary.rows,
        flow_run_id=run_id,
        alias=alias,
        baseline=build.baseline or "",
        golden_queries=golden_queries,
        validation=validation.model_dump_json(),
    )


def approved_pair(settings: Settings, name: str) -> PairMetadata:
    """The metadata of a candidate a person approved that is not live yet.

    Raises:
        PairNotFound: no such managed collection.
        ConfigError: it is not in state ``approved``.
    """
    check_name(name)
    with MilvusGateway(settings) as milvus:
        pair = milvus.read_pair(name)
    if pair.state != PairState.APPROVED:
        raise ConfigError(
            f"{name!r} is {pair.state.value}; only an approved candidate that was not "
            "switched (state approved) can be switched this way"
        )
    return pair


@task(name="read-approved", cache_policy=NO_CACHE)
def read_approved(settings: Settings, name: str) -> PairMetadata:
    """Task wrapper of :func:`approved_pair`."""
    return approved_pair(settings, name)


def rebase(settings: Settings, name: str, baseline: str | None) -> None:
    """Record the live pair a candidate was validated against again."""
    with MilvusGateway(settings) as milvus:
        milvus.update_pair(name, baseline=baseline or "")


@task(name="rebase-candidate", cache_policy=NO_CACHE)
def rebase_candidate(settings: Settings, name: str, baseline: str | None) -> None:
    """Task wrapper of :func:`rebase`."""
    rebase(settings, name, baseline)
