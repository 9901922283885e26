"""Whether a suggestion may publish itself: the autonomy rules, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass

from core.bots import Autonomy, BotSettings
from core.models import Suggestion
from core.pipeline.proposals import PLACEHOLDER_ANSWERS

# Kinds that autonomy may publish; a rollback is a person's call (advanced autonomy rolls
# back its own changes itself, core.policy.service.check_watches).
AUTO_KINDS = ("new_answer", "improve_answer", "add_variants")
# The order autonomy spends its daily limit in, safest first: new phrasings of an entry change
# no answer (and teach the bot fastest in its first weeks); a new answer only reaches
# customers who were escalated before; a changed answer reaches everyone the entry served.
RISK_ORDER = {"add_variants": 0, "new_answer": 1, "improve_answer": 2}


def risk_rank(kind: str) -> int:
    return RISK_ORDER.get(kind, len(RISK_ORDER))


@dataclass(frozen=True)
class AutoVerdict:
    publish: bool
    reason: str  # why it was published, or why a reviewer must decide


def hold(reason: str) -> AutoVerdict:
    return AutoVerdict(False, reason)


def auto_publish_verdict(sug: Suggestion, settings: BotSettings, *, published_today: int,
                         rejected_before: bool = False,
                         rolled_back_before: bool = False) -> AutoVerdict:
    """The rules, most fundamental first, so the reason given is the one that matters."""
    above = settings.auto_publish_above()
    if not settings.enabled:
        return hold("auto-training is paused")
    if above is None:
        return hold(f"{Autonomy.conservative.value} autonomy: every change needs a reviewer")
    if sug.kind not in AUTO_KINDS:
        return hold("a rollback is always decided by a reviewer")
    evidence = sug.evidence or {}
    if sug.answer in PLACEHOLDER_ANSWERS or evidence.get("needs_answer"):
        return hold("there is no answer to publish yet")
    if sug.category and sug.category in settings.excluded_categories:
        return hold(f'the "{sug.category}" category is excluded from auto-publishing')
    if sug.confidence <= above:
        return hold(f"confidence {sug.confidence} is not above the {settings.autonomy.value} "
                    f"threshold of {above}")
    if evidence.get("duplicate_of") or evidence.get("contradicts"):
        return hold("it may repeat or contradict an existing entry")
    if rejected_before:
        return hold("a reviewer rejected or undid an earlier proposal for these questions")
    if rolled_back_before:
        return hold("an earlier change to this entry was rolled back")
    if published_today >= settings.daily_auto_publish_limit:
        return hold(f"today's limit of {settings.daily_auto_publish_limit} auto-published "
                    "changes is reached")
    return AutoVerdict(True, f"confidence {sug.confidence} is above the "
                             f"{settings.autonomy.value} threshold of {above}")
