"""The review door (core.review.door.Review) and the views every review channel renders."""

from core.review.door import Command, Review
from core.review.mailroom import DigestNumbers, Mailroom, Numbered, OutgoingView, ReplyKeyView
from core.review.views import (
    AnnouncementView,
    AuditView,
    BotRef,
    CategoryView,
    Decided,
    EntryHistory,
    EntryView,
    Figures,
    Outcome,
    Period,
    QuestionKind,
    QuestionsView,
    QuestionView,
    StatsView,
    SuggestionView,
    VersionView,
    WatchView,
)

__all__ = ["AnnouncementView", "AuditView", "BotRef", "CategoryView", "Command", "Decided",
           "DigestNumbers", "EntryHistory", "EntryView", "Figures", "Mailroom", "Numbered",
           "Outcome", "OutgoingView", "Period", "QuestionKind", "QuestionView",
           "QuestionsView", "ReplyKeyView", "Review", "StatsView",
           "SuggestionView", "VersionView", "WatchView"]
