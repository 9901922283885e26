"""One-click links in the digest: signed, bound to a recipient and an item, expiring, spent
once; opening one (GET or HEAD, as mail scanners do) only shows what a POST would do."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from bot.mail.decide import Ask, Decision, decide
from core.errors import DomainError
from core.policy.commands import Actor, Channel, RejectReason
from core.review import BotRef, Review, SuggestionView
from core.settings import Settings

LinkAction = Literal["approve", "reject", "undo"]
SALT = "autotrain.email-link.v1"
PATH = "/email/links"


class LinkError(Exception):
    """A link that cannot be used; the message is shown on the page."""


@dataclass(frozen=True)
class LinkClaim:
    """What a token says: who it was sent to, and which decision on which digest number."""

    token_id: str
    recipient: str
    bot_id: str
    digest_id: str
    number: int
    action: LinkAction


@dataclass(frozen=True)
class LinkPage:
    """What the page shows: the item, and either a button that confirms or the result."""

    title: str
    action: LinkAction
    number: int
    bot_name: str
    suggestion: SuggestionView | None
    note: str | None  # an announcement's text (undo links)
    message: str | None  # the result of a POST, or why the link cannot be used
    ok: bool | None  # None: not tried yet (a GET); True/False after a POST
    can_confirm: bool
    reasons: list[tuple[str, str]]  # reject reasons for the form: (value, words)


REASON_WORDS: dict[str, str] = {
    RejectReason.wrong_information: "Wrong information",
    RejectReason.not_a_gap: "Not a real gap",
    RejectReason.sensitive: "Sensitive topic",
    RejectReason.duplicate: "Duplicate",
    RejectReason.tone: "Wrong tone",
    RejectReason.other: "Other",
}


class Links:
    def __init__(self, settings: Settings, review: Review) -> None:
        self.settings = settings
        self.review = review
        self.max_age = settings.email_key_days * 86400
        self._signer = URLSafeTimedSerializer(settings.link_secret(), salt=SALT)

    def url(self, *, recipient: str, bot_id: str, digest_id: str, number: int,
            action: LinkAction) -> str:
        token = self._signer.dumps({"j": secrets.token_urlsafe(12), "r": recipient.lower(),
                                    "b": bot_id, "d": digest_id, "n": number, "a": action})
        return f"{self.settings.public_url.rstrip('/')}{PATH}/{token}"

    def read(self, token: str) -> LinkClaim:
        try:
            data = self._signer.loads(token, max_age=self.max_age)
        except SignatureExpired as exc:
            raise LinkError("This link has expired. Reply to a newer digest, or decide in "
                            "Slack or the API.") from exc
        except BadSignature as exc:
            raise LinkError("This link is not valid (it may have been cut or changed).") \
                from exc
        try:
            return LinkClaim(token_id=str(data["j"]), recipient=str(data["r"]),
                             bot_id=str(data["b"]), digest_id=str(data["d"]),
                             number=int(data["n"]), action=data["a"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LinkError("This link is not valid.") from exc

    # -- the page ---------------------------------------------------------------------------

    def preview(self, token: str) -> LinkPage:
        """What GET and HEAD show: the item and a confirm button. Changes nothing."""
        claim, bot = self._claim(token)
        page = self._page(claim, bot)
        spent = self.review.mail.token_spent(claim.token_id)
        if spent is not None:
            return _with(page, message=f"This link was already used ({spent:%Y-%m-%d %H:%M} "
                                       "UTC).", can_confirm=False)
        if page.suggestion is not None and claim.action != "undo" \
                and not page.suggestion.is_open:
            return _with(page, message=f"Nothing to do: this suggestion is "
                                       f"{page.suggestion.status_words}.", can_confirm=False)
        return page

    def apply(self, token: str, *, reason: str | None = None,
              comment: str | None = None) -> LinkPage:
        """The POST from the page: the decision, once per token, audited with channel link."""
        claim, bot = self._claim(token)
        if not self.review.mail.spend_token(claim.token_id, recipient=claim.recipient,
                                            action=claim.action):
            page = self._page(claim, bot)
            return _with(page, message="This link was already used.", ok=False,
                         can_confirm=False)
        digest = self.review.mail.digest(claim.digest_id)
        if digest.bot_id != bot.id:
            raise LinkError("This link is not valid.")
        ask = Ask(action=claim.action, number=claim.number,
                  reason=reason if reason in REASON_WORDS else None,
                  comment=(comment or "").strip()[:2000] or None)
        done: Decision = decide(self.review, bot, digest, ask,
                                actor=Actor(name=claim.recipient, channel=Channel.link))
        if not done.ok:
            # Nothing happened: the token may be used again once the reason is gone.
            self.review.mail.unspend_token(claim.token_id)
        page = self._page(claim, bot)
        return _with(page, message=done.message, ok=done.ok, can_confirm=False)

    def _claim(self, token: str) -> tuple[LinkClaim, BotRef]:
        claim = self.read(token)
        try:
            bot = self.review.bot_by_id(claim.bot_id)
        except DomainError as exc:
            raise LinkError("This link is not valid any more.") from exc
        if claim.recipient not in bot.settings.email_recipients:
            # Taken off the bot's recipients since: their links stop with their replies.
            raise LinkError("This address no longer reviews this bot's suggestions.")
        return claim, bot

    def _page(self, claim: LinkClaim, bot: BotRef) -> LinkPage:
        digest = self.review.mail.digest(claim.digest_id)
        item = digest.find(claim.number)
        suggestion = note = None
        if item is not None and item.suggestion_id is not None:
            suggestion = self.review.card(item.suggestion_id, bot=bot)
        elif item is not None and item.announcement_id is not None:
            announcement = self.review.announcement(item.announcement_id, bot=bot)
            note = announcement.text
            if announcement.suggestion_id:
                suggestion = self.review.card(announcement.suggestion_id, bot=bot)
        verb = {"approve": "Approve", "reject": "Reject", "undo": "Undo"}[claim.action]
        return LinkPage(title=f"{verb} item {claim.number} — {bot.name}", action=claim.action,
                        number=claim.number, bot_name=bot.name, suggestion=suggestion,
                        note=note, message=None, ok=None,
                        can_confirm=item is not None,
                        reasons=list(REASON_WORDS.items()))


def _with(page: LinkPage, **changes: object) -> LinkPage:
    return replace(page, **changes)  # type: ignore[arg-type]
