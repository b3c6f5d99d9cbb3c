"""The canary: live evidence about a candidate pair while it awaits approval.

Shadow traffic (live queries mirrored to the candidate off the response path) and a
team-draft interleaved comparison credited by clicks, accumulated by the search service
(:class:`Canary`), stored on the candidate (:mod:`.store`) and shown to the approver.
The decisions are pure functions in :mod:`.interleave`.
"""

from indexpair.serving.canary.interleave import (
    Outcome,
    Team,
    clicks_per_team,
    deny_reason,
    in_bucket,
    leader,
    outcome,
    overlap_at_k,
    rank_biased_overlap,
    sign_test,
    team_draft,
)
from indexpair.serving.canary.runtime import Canary, FeedbackRefused, HitNotShown, UnknownQuery
from indexpair.serving.canary.stats import CanaryStats, canary_markdown
from indexpair.serving.canary.store import report_key, stored_stats

__all__ = [
    "Canary",
    "CanaryStats",
    "FeedbackRefused",
    "HitNotShown",
    "Outcome",
    "Team",
    "UnknownQuery",
    "canary_markdown",
    "clicks_per_team",
    "deny_reason",
    "in_bucket",
    "leader",
    "outcome",
    "overlap_at_k",
    "rank_biased_overlap",
    "report_key",
    "sign_test",
    "stored_stats",
    "team_draft",
]
