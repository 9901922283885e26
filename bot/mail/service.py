"""The email channel wired once per process: the mailer, the inbound pipeline, the links and
the pages they show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from bot.mail.inbound import Inbound
from bot.mail.links import LinkPage, Links
from bot.mail.send import Mailer, mailer_for
from core.review import Review
from core.settings import Settings

PAGES = Path(__file__).resolve().parents[2] / "templates" / "pages"
_pages = Environment(loader=FileSystemLoader(str(PAGES)), undefined=StrictUndefined,
                     autoescape=select_autoescape(["html", "j2"], default=True))


@dataclass
class MailDeps:
    settings: Settings
    review: Review
    mailer: Mailer
    inbound: Inbound
    links: Links


def build_mail(settings: Settings, review: Review, *, mailer: Mailer | None = None
               ) -> MailDeps:
    mailer = mailer or mailer_for(settings)
    return MailDeps(settings=settings, review=review, mailer=mailer,
                    inbound=Inbound(review, settings, mailer), links=Links(settings, review))


def link_page_html(page: LinkPage) -> str:
    """The page a one-click link opens (its texts are untrusted: autoescaped)."""
    return _pages.get_template("link.html.j2").render(page=page)
