"""Reconcile: repair the derived records of pair roles from the alias truth.

The Milvus alias says which pair is live. Everything else is a record derived from it:
the ``state`` property of each collection (``live``, ``previous``, ``rolled_back``) and,
in MLflow, the ``production`` alias and the ``status``/``collection`` tags of the live
version. A switch cut off halfway (a crash, a lost connection, MLflow down) leaves these
records behind the alias; :func:`reconcile` finds each difference and, when asked,
writes the record the alias implies. Planning is pure (:func:`plan_alias`,
:func:`plan_registry`), so it is tested as a table.

The MLflow ``production`` alias names one version per registered model. When several
Milvus aliases serve versions of one model, it follows the alias switched last.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Literal

from pydantic import BaseModel

from indexpair import faults
from indexpair.gateways import prefect as prefect_api
from indexpair.gateways.milvus import MilvusGateway
from indexpair.gateways.mlflow import TAG_PREFIX, MlflowRegistry, ModelVersionRef, is_registry_error
from indexpair.pair import PairMetadata, PairState, now_iso
from indexpair.roles import group_of
from indexpair.settings import Settings

log = logging.getLogger(__name__)
Pairs = dict[str, PairMetadata]


class Fix(BaseModel):
    """One record that disagrees with the alias truth, and what it should say."""

    where: Literal["milvus", "mlflow"]
    alias: str
    target: str
    what: str
    before: str
    after: str
    why: str
    changes: dict[str, str] = {}
    applied: bool = False
    error: str = ""


def _retire(alias: str, name: str, pair: PairMetadata, live: PairMetadata | None) -> Fix:
    """The fix for a pair still marked live that no alias serves any more."""
    replaced_here = live is not None and live.replaces == name
    rolled = replaced_here and live is not None and live.switch_kind == "rollback"
    state = PairState.ROLLED_BACK if rolled else PairState.PREVIOUS
    since = (live.live_since if replaced_here and live is not None else "") or now_iso()
    stamp_field = "rolled_back_since" if rolled else "previous_since"
    return Fix(
        where="milvus",
        alias=alias,
        target=name,
        what="state",
        before=pair.state.value,
        after=state.value,
        why=f"marked live, but alias {alias!r} serves another pair",
        changes={"state": state.value, stamp_field: since},
    )


def plan_alias(alias: str, target: str | None, pairs: Pairs, aliased: set[str]) -> list[Fix]:
    """Milvus records of one alias that disagree with where it points.

    Args:
        alias: the alias to check.
        target: the collection it points at (None: no such alias).
        pairs: every managed collection's pair metadata.
        aliased: every collection any alias points at (never retired here).
    """
    live = pairs.get(target) if target else None
    fixes = []
    if live is not None and target and live.state != PairState.LIVE:
        fixes.append(
            Fix(
                where="milvus",
                alias=alias,
                target=target,
                what="state",
                before=live.state.value,
                after=PairState.LIVE.value,
                why=f"alias {alias!r} points at it",
                changes={"state": PairState.LIVE.value, "live_since": live.live_since or now_iso()},
            )
        )
    replaced = live.replaces if live is not None else ""
    for name, pair in sorted(pairs.items()):
        ours = group_of(pair) == alias or name == replaced  # a pair built for no alias too
        if pair.state == PairState.LIVE and name not in aliased and ours:
            fixes.append(_retire(alias, name, pair, live))
    return fixes


def plan_registry(
    alias: str,
    target: str,
    live: PairMetadata,
    production_version: str | None,
    tags: dict[str, str],
    production_alias: str,
) -> list[Fix]:
    """MLflow records of the live pair behind ``alias`` that disagree with it.

    Args:
        alias: the Milvus alias.
        target: the live collection.
        live: its pair metadata.
        production_version: the version MLflow's production alias names now (or None).
        tags: the ``indexpair.*`` tags of the live version, without the prefix.
        production_alias: MLflow's production alias name.
    """
    model = f"{live.model_name} v{live.model_version}"
    fixes = []
    if production_version != live.model_version:
        fixes.append(
            Fix(
                where="mlflow",
                alias=alias,
                target=live.model_name,
                what=f"alias {production_alias!r}",
                before=f"v{production_version}" if production_version else "(none)",
                after=f"v{live.model_version}",
                why=f"{target} is live behind {alias!r}",
            )
        )
    wanted = {"status": "live", "collection": target}
    wrong = {k: v for k, v in wanted.items() if tags.get(k) != v}
    if wrong:
        fixes.append(
            Fix(
                where="mlflow",
                alias=alias,
                target=model,
                what="tags " + ", ".join(sorted(wrong)),
                before=", ".join(f"{k}={tags.get(k, '')!r}" for k in sorted(wrong)),
                after=", ".join(f"{k}={v!r}" for k, v in sorted(wrong.items())),
                why=f"{target} is live behind {alias!r}",
                changes=wrong,
            )
        )
    return fixes


def _newest_live(pairs: Pairs, targets: dict[str, str]) -> dict[str, str]:
    """Per model name, the alias whose live pair switched last (MLflow follows it)."""
    newest: dict[str, tuple[str, str]] = {}
    for alias, target in sorted(targets.items()):
        pair = pairs.get(target)
        if pair is None:
            continue
        key = (pair.live_since, alias)
        if pair.model_name not in newest or key > newest[pair.model_name]:
            newest[pair.model_name] = key
    return {model: alias for model, (_, alias) in newest.items()}


def _apply_milvus(gateway: MilvusGateway, fix: Fix) -> None:
    gateway.update_pair(fix.target, **fix.changes)
    fix.applied = True
    log.info("reconcile: %s %s %s -> %s (%s)", fix.target, fix.what, fix.before, fix.after, fix.why)
    faults.crash_point("reconcile.fixed")


def settle_alias(gateway: MilvusGateway, alias: str) -> list[Fix]:
    """Write the Milvus records one alias implies. The caller holds the alias lock."""
    targets = gateway.alias_targets()
    pairs = dict(gateway.list_pairs())
    fixes = plan_alias(alias, targets.get(alias), pairs, set(targets.values()))
    for fix in fixes:
        _apply_milvus(gateway, fix)
    return fixes


def _registry_fixes(
    settings: Settings, alias: str, target: str, live: PairMetadata, apply: bool
) -> list[Fix]:
    """Plan (and apply) the MLflow fixes of one alias; MLflow trouble becomes a noted fix."""
    ref = ModelVersionRef(name=live.model_name, version=live.model_version, uri=live.model_uri)
    name = settings.production_model_alias
    try:
        with MlflowRegistry(settings) as registry:
            current = registry.alias_version(live.model_name, name)
            raw = registry.version_tags(live.model_name, live.model_version)
            tags = {k.removeprefix(TAG_PREFIX): v for k, v in raw.items()}
            fixes = plan_registry(alias, target, live, current, tags, name)
            for fix in fixes if apply else []:
                if fix.what.startswith("alias"):
                    registry.set_alias(ref, name)
                else:
                    registry.set_tags(ref, fix.changes)
                fix.applied = True
                faults.crash_point("reconcile.fixed")
    except Exception as exc:  # MLflow down must not stop the Milvus repairs
        if not is_registry_error(exc):
            raise
        log.warning("reconcile: MLflow not repaired for %s: %s", alias, exc)
        return [
            Fix(
                where="mlflow",
                alias=alias,
                target=live.model_name,
                what="registry",
                before="unknown",
                after=f"v{live.model_version} live",
                why="MLflow did not answer",
                error=str(exc)[:300],
            )
        ]
    return fixes


@contextmanager
def _locked(settings: Settings, alias: str, apply: bool) -> Iterator[None]:
    """The alias lock when writing; a dry run reads without it."""
    with prefect_api.alias_lock(settings.lock_name(alias)) if apply else nullcontext():
        yield


def reconcile(
    settings: Settings, alias: str | None = None, apply: bool = False, mlflow: bool = True
) -> list[Fix]:
    """Every record that disagrees with the alias truth; written too when ``apply``.

    Args:
        settings: where Milvus, MLflow and the Prefect API (for the alias lock) are.
        alias: only this alias; default every alias and every group with a live mark.
        apply: write the fixes (under each alias's lock); otherwise a dry run.
        mlflow: also check the MLflow production alias and tags.
    """
    with MilvusGateway(settings) as milvus:
        targets = milvus.alias_targets()
        pairs = dict(milvus.list_pairs())
        marked = {group_of(p) for p in pairs.values() if p.state == PairState.LIVE}
        aliases = [alias] if alias else sorted(set(targets) | marked)
        fixes: list[Fix] = []
        for name in aliases:
            with _locked(settings, name, apply):
                if apply:
                    fixes += settle_alias(milvus, name)
                else:
                    fixes += plan_alias(name, targets.get(name), pairs, set(targets.values()))
        if not mlflow:
            return fixes
        targets = milvus.alias_targets()
        pairs = dict(milvus.list_pairs())
    newest = _newest_live(pairs, targets)
    for name in aliases:
        target = targets.get(name)
        live = pairs.get(target) if target else None
        if target and live is not None and newest.get(live.model_name) == name:
            fixes += _registry_fixes(settings, name, target, live, apply)
    return fixes
