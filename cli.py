"""The `autotrain` command line: serve, migrate, reindex, import, cycle, demo, bench."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, select

from core.bots import Autonomy, create_bot, ensure_admin_key, get_bot
from core.conversations import MAX_BATCH, ConversationIn, check_batch, store_conversations
from core.db import session_scope
from core.errors import DomainError, InvalidInput, NotFound
from core.models import Bot
from core.policy.commands import Actor, Channel, CreateEntry, UpdateSettings
from core.replay import AgentStyle
from core.services import Services, build_core_services
from core.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="autotrain: keeps a support chatbot learning from its conversations.",
                  no_args_is_help=True, add_completion=False)
CLI_ACTOR = Actor(name="cli", channel=Channel.cli)
# The demo bot's reviewer: the digest `demo` writes to the outbox is addressed to them.
DEMO_MANAGER = "manager@voltcart.example"


def _settings(data_dir: Path | None = None) -> Settings:
    try:
        overrides: dict[str, Any] = {}
        if data_dir is not None:
            overrides["AUTOTRAIN_DATA_DIR"] = data_dir
        return load_settings(**overrides)
    except SettingsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def _services(settings: Settings) -> Services:
    return build_core_services(settings)


def _logging(settings: Settings) -> None:
    from core.logs import configure, settings_secrets

    # One handler for every logger (uvicorn's and arq's too): JSON or text, each line with
    # its bot, job and correlation id, and no secret from these settings in it.
    configure(level=settings.log_level, fmt=settings.log_format,
              secrets=settings_secrets(settings))


def _bot(svc: Services, slug: str) -> Bot:
    with Session(svc.engine) as session:
        try:
            return get_bot(session, slug=slug)
        except NotFound as exc:
            typer.secho(f"{exc} (create it with the API or --create)", fg="red", err=True)
            raise typer.Exit(1) from None


def _announce_admin_key(settings: Settings, engine: Engine) -> None:
    configured = settings.api_key.get_secret_value() if settings.api_key else None
    with session_scope(engine) as session:
        generated = ensure_admin_key(session, configured=configured)
    if generated:
        typer.secho("Generated an admin API key (shown once; set AUTOTRAIN_API_KEY to choose "
                    "your own):", fg="yellow")
        typer.echo(f"  {generated}")


slack_app = typer.Typer(help="Connect Slack (see the README's \"Connect Slack\").",
                        no_args_is_help=True)
app.add_typer(slack_app, name="slack")


@slack_app.command("manifest")
def slack_manifest(url: Annotated[str, typer.Option(
        help="Where Slack reaches this server, e.g. https://autotrain.example.com")],
                   name: str = "autotrain") -> None:
    """Print the Slack app manifest (scopes, /autotrain, interactivity, events and App Home,
    all at URL/slack/events) to paste at https://api.slack.com/apps."""
    import json

    from bot.manifest import manifest

    try:
        typer.echo(json.dumps(manifest(url, name=name), indent=2))
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


email_app = typer.Typer(help="The email channel: see what autotrain reads from a reply.",
                        no_args_is_help=True)
app.add_typer(email_app, name="email")


@email_app.command("parse")
def email_parse(file: Annotated[Path, typer.Argument(
        help="An RFC 822 message (.eml), or just the text of a reply")]) -> None:
    """Show, as JSON, what autotrain reads from an email reply; changes nothing.

    Its new text, the commands in it and the lines it could not read, or why it gets no action.
    """
    import os
    from datetime import date

    from bot.mail.commands import read_commands
    from bot.mail.parse import Ignored, is_message, read_mail, reply_text

    try:
        raw = file.read_bytes()
    except OSError as exc:
        typer.secho(f"cannot read {file}: {exc.strerror or exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    out: dict[str, Any]
    if is_message(raw):
        own = [os.environ["EMAIL_FROM"]] if os.environ.get("EMAIL_FROM") else []
        mail = read_mail(raw, own_addresses=own)
        out = {"text": mail.text, "ignored": mail.ignored, "sender": mail.sender,
               "message_id": mail.message_id, "subject": mail.subject}
    else:
        text = reply_text(raw.decode("utf-8", errors="replace"))
        out = {"text": text, "ignored": None if text else Ignored.no_text, "sender": None,
               "message_id": None, "subject": ""}
    # A message that gets no action shows no commands: none of them would be applied.
    read = read_commands(out["text"], today=date.today()) if out["ignored"] is None else None
    typer.echo(json.dumps({
        "text": out["text"],
        "commands": [c.public() for c in read.commands] if read else [],
        "problems": read.problems if read else [],
        "ignored": out["ignored"].value if out["ignored"] else None,
        "sender": out["sender"], "message_id": out["message_id"], "subject": out["subject"],
    }, indent=2, ensure_ascii=False))


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000,
          data_dir: Annotated[Path | None,
                              typer.Option(help="Overrides AUTOTRAIN_DATA_DIR")] = None,
          smtp_port: Annotated[int | None, typer.Option(
              help="Receive replies by SMTP on this port (overrides "
                   "AUTOTRAIN_SMTP_LISTEN_PORT; bound to AUTOTRAIN_SMTP_LISTEN_HOST, "
                   "127.0.0.1 by default)", min=0, max=65535)] = None,
          workers: Annotated[int, typer.Option(
              help="App processes sharing the port (needs DATABASE_URL on PostgreSQL and "
                   "CHROMA_URL); without REDIS_URL one of them runs the scheduled jobs",
              min=1, max=64)] = 1) -> None:
    """Run the HTTP API (and, without REDIS_URL, the scheduled jobs in this process)."""
    import uvicorn

    from app import create_app

    settings = _settings(data_dir)
    if smtp_port is not None:
        settings = settings.model_copy(update={"smtp_listen_port": smtp_port})
    if workers > 1:
        _check_workers(settings, workers)
    _logging(settings)
    if workers == 1:
        svc = _services(settings)
        _announce_admin_key(svc.settings, svc.engine)
    else:
        from core.db import make_engine, migrate

        # Once here, before the workers start: each of them then only connects.
        migrate(settings.sqlalchemy_url)
        engine = make_engine(settings.sqlalchemy_url)
        _announce_admin_key(settings, engine)
        engine.dispose()
    for name, state in settings.integrations().items():
        typer.echo(f"  {name:13} {state}")
    typer.echo(f"API docs: http://{host}:{port}/docs")
    if workers == 1:
        uvicorn.run(create_app(svc), host=host, port=port, log_level="warning")
        return
    typer.echo(f"  {'processes':13} {workers} app workers"
               + ("" if settings.redis_url else "; scheduled jobs in one of them"))
    # The workers read their settings from the environment: carry the command's overrides.
    if data_dir is not None:
        os.environ["AUTOTRAIN_DATA_DIR"] = str(data_dir)
    # uvicorn kills a worker that does not answer its supervisor's ping within the timeout
    # (5 s by default): a worker loading the embedding model, or answering on a busy
    # machine, can take longer, and was killed and restarted in a loop.
    uvicorn.run("app:worker_app", factory=True, workers=workers, host=host, port=port,
                log_level="warning", timeout_worker_healthcheck=WORKER_PING_SECONDS)


WORKER_PING_SECONDS = 60


def _check_workers(settings: Settings, workers: int) -> None:
    """Several app processes only on engines several processes may share."""
    problems = []
    if not settings.chroma_url:
        problems.append("the embedded vector index has a single writer: set CHROMA_URL to a "
                        "Chroma server (`chroma run`)")
    if settings.sqlalchemy_url.startswith("sqlite"):
        problems.append("the SQLite file is for one process: set DATABASE_URL to PostgreSQL")
    if settings.smtp_listen_port is not None:
        problems.append("only one process can listen for SMTP replies: run one "
                        "`autotrain serve --smtp-port` besides the workers")
    if problems:
        typer.secho(f"--workers {workers} refused: " + "; ".join(problems), fg="red", err=True)
        raise typer.Exit(2)


@app.command()
def migrate(data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Apply database migrations (also done by `serve`)."""
    from core.db import current_revision, make_engine
    from core.db import migrate as run_migrations

    settings = _settings(data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.sqlalchemy_url)
    typer.echo(f"schema at revision {current_revision(make_engine(settings.sqlalchemy_url))}")


@app.command()
def reindex(bot: Annotated[str | None, typer.Option(help="Bot slug (default: all)")] = None,
            check: Annotated[bool, typer.Option(help="Only report drift")] = False,
            data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Rebuild the vector index from SQL (the source of truth), or report drift with --check."""
    svc = _services(_settings(data_dir))
    with Session(svc.engine) as session:
        bots = [get_bot(session, slug=bot)] if bot else list(session.exec(select(Bot)))
    drift = False
    for b in bots:
        if check:
            report = svc.index_sync.reconcile(bot_id=b.id)
            drift |= not report["in_sync"]
            typer.echo(f"{b.slug}: {json.dumps(report)}")
        else:
            written = svc.index_sync.reindex(bot_id=b.id)
            typer.echo(f"{b.slug}: {written} phrasings indexed")
    if drift:
        raise typer.Exit(1)


class ImportKind(StrEnum):
    conversations = "conversations"
    kb = "kb"


class KBRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=1_000)
    answer: str = Field(min_length=1, max_length=8_000)
    variants: list[str] = Field(default_factory=list, max_length=200)
    category: str | None = Field(default=None, max_length=100)


def _read_kb(path: Path) -> list[KBRow]:
    rows: list[KBRow] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"question", "answer"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: CSV header lacks column(s) {sorted(missing)}")
            for n, raw in enumerate(reader, start=2):
                variants = [v.strip() for v in (raw.get("variants") or "").split("|") if v.strip()]
                try:
                    rows.append(KBRow(question=raw["question"], answer=raw["answer"],
                                      variants=variants, category=raw.get("category") or None))
                except ValidationError as exc:
                    raise ValueError(f"{path}:{n}: {_first_error(exc)}") from None
        return rows
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(KBRow.model_validate_json(line))
            except ValidationError as exc:
                raise ValueError(f"{path}:{n}: {_first_error(exc)}") from None
    return rows


def _read_conversations(path: Path) -> list[ConversationIn]:
    out: list[ConversationIn] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            conv = ConversationIn.model_validate_json(line)
            check_batch([conv])
        except ValidationError as exc:
            raise ValueError(f"{path}:{n}: {_first_error(exc)}") from None
        except InvalidInput as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
        if conv.id in seen:
            raise ValueError(
                f"{path}:{n}: conversation id {conv.id!r} repeats line {seen[conv.id]}")
        seen[conv.id] = n
        out.append(conv)
    return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "line"
    return f"{where}: {err['msg']}"


@app.command("import")
def import_(kind: ImportKind, path: Path,
            bot: Annotated[str, typer.Option(help="Bot slug")],
            create: Annotated[bool, typer.Option(help="Create the bot if missing")] = False,
            data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Import conversations (JSONL, the API's format) or KB entries (CSV or JSONL).

    The whole file is validated first; a bad line stops the import with nothing written.
    KB CSV columns: question, answer, variants (separated by |), category.
    """
    if not path.is_file():
        typer.secho(f"{path}: no such file", fg="red", err=True)
        raise typer.Exit(2)
    try:
        items: list[Any] = _read_kb(path) if kind == ImportKind.kb else _read_conversations(path)
    except (ValueError, UnicodeDecodeError) as exc:
        typer.secho(f"nothing imported: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    svc = _services(_settings(data_dir))
    if create:
        with session_scope(svc.engine) as session:
            if session.exec(select(Bot).where(Bot.slug == bot)).first() is None:
                create_bot(session, slug=bot, name=bot)
    target = _bot(svc, bot)
    if kind == ImportKind.kb:
        # One transaction: a row the KB refuses (e.g. a blank answer) leaves nothing imported.
        try:
            svc.policy.create_entries([
                CreateEntry(bot_id=target.id, question=row.question, answer=row.answer,
                            variants=row.variants, category=row.category, actor=CLI_ACTOR)
                for row in items])
        except InvalidInput as exc:
            typer.secho(f"nothing imported: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"imported {len(items)} KB entries into {bot}")
        return
    accepted = updated = 0
    # One transaction for the whole file: an error leaves nothing half-imported.
    with session_scope(svc.engine) as session:
        for start in range(0, len(items), MAX_BATCH):
            a, u = store_conversations(session, bot_id=target.id,
                                       conversations=items[start:start + MAX_BATCH])
            accepted += a
            updated += u
    typer.echo(f"conversations: {accepted} new, {updated} updated in {bot}")


@app.command("worker")
def run_worker(burst: Annotated[bool, typer.Option(
                   "--burst", help="Run the jobs already queued, then exit (no schedule)")
               ] = False,
               data_dir: Annotated[Path | None, typer.Option(
                   help="Overrides AUTOTRAIN_DATA_DIR")] = None) -> None:
    """Run the ARQ worker on REDIS_URL: cycles on their cadence, Slack and email digests and
    retries, IMAP polling, and the relay of KB changes to the vector index. Start as many as
    you like; `autotrain serve` then only enqueues."""
    settings = _settings(data_dir)
    if not settings.redis_url:
        typer.echo("autotrain worker needs REDIS_URL (e.g. redis://127.0.0.1:6379/0); "
                   "without Redis, `autotrain serve` runs these jobs in its own process.",
                   err=True)
        raise typer.Exit(2)
    if data_dir is not None:
        # The worker builds its services from the environment, in its own startup hook.
        os.environ["AUTOTRAIN_DATA_DIR"] = str(data_dir)
    _logging(settings)
    from arq import run_worker as arq_run_worker

    import worker as jobs

    # The URL is not printed: it may carry Redis's password.
    typer.echo("worker started on REDIS_URL" + (" (burst)" if burst else ""))
    arq_run_worker(jobs.WorkerSettings, burst=burst)  # type: ignore[arg-type]


@app.command()
def cycle(bot: Annotated[str | None, typer.Option(help="Bot slug (default: every bot)")] = None,
          as_of: Annotated[datetime | None, typer.Option(help="Treat this time as now")] = None,
          full: Annotated[bool, typer.Option(
              "--full", help="Re-analyse every stored conversation from scratch (e.g. after "
                             "changing gap_similarity); decided suggestions are kept")] = False,
          reembed: Annotated[bool, typer.Option(
              "--reembed", help="With --full: embed every text again instead of reusing the "
                                "stored vectors (after changing the embedding model)")] = False,
          data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Run the analysis cycle now and print what it found."""
    svc = _services(_settings(data_dir))
    with Session(svc.engine) as session:
        bots = [get_bot(session, slug=bot)] if bot else list(session.exec(select(Bot)))
    for b in bots:
        result = svc.cycle.run(bot_id=b.id, as_of=as_of.replace(tzinfo=as_of.tzinfo or UTC)
                               if as_of else None, full=full, reembed=reembed)
        typer.echo(f"{b.slug}: {json.dumps(result.public())}")


@app.command()
def demo(data_dir: Annotated[Path, typer.Option(help="A fresh directory for the demo")] = Path(
             "./demo-data"),
         host: str = "127.0.0.1", port: int = 8000,
         serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True) -> None:
    """Load the Voltcart demo (a fictional electronics store), run a cycle, then serve."""
    from core.demo.loader import load_demo

    settings = _settings(data_dir)
    _logging(settings)
    svc = _services(settings)
    _announce_admin_key(svc.settings, svc.engine)
    from bot.mail.digest import send_digest
    from bot.mail.send import FileMailer

    now = datetime.now(UTC)
    summary = load_demo(svc, now=now)
    base_url = f"http://{host}:{port}"
    if summary.suggestions:
        # Email is off on the embedded default: the digest a manager would get is a file.
        bot = svc.review.bot(summary.bot_slug)
        svc.review.execute(UpdateSettings(bot_id=bot.id, actor=CLI_ACTOR,
                                          patch={"email_recipients": [DEMO_MANAGER]}), bot=bot)
        mailer = FileMailer(settings.mail_outbox_dir)
        asyncio.run(send_digest(svc.review, settings, mailer, svc.review.bot(bot.slug)))
        summary.digest_path = str(mailer.written[-1]) if mailer.written else None
    typer.echo(summary.report(base_url=base_url))
    if serve_after:
        import uvicorn

        from app import create_app

        typer.echo(f"Serving on http://{host}:{port} (Ctrl-C to stop)")
        uvicorn.run(create_app(svc), host=host, port=port, log_level="warning")


@app.command()
def replay(
    data: Annotated[Path, typer.Argument(help="Labelled questions: CSV text,label")],
    coverage: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.4,
    conversations: Annotated[int, typer.Option(min=1, help="Conversations a week")] = 600,
    decisions: Annotated[int, typer.Option(min=0, help="Admin decisions a week")] = 40,
    weeks: Annotated[int, typer.Option(min=1)] = 6,
    seed: int = 0,
    autonomy: Annotated[Autonomy, typer.Option(
        help="The simulated bot's autonomy: what publishes itself, and how often it is right")
    ] = Autonomy.conservative,
    seed_phrasings: Annotated[int, typer.Option(
        min=1, help="Phrasings per covered label in the seeded KB (4 before issue 13)")] = 1,
    off_topic: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of customers asking something off-topic, which agents "
        "decline")] = 0.03,
    agent_style: Annotated[AgentStyle, typer.Option(
        help="macro: one canned template for every topic; distinct: a distinct answer a topic")
    ] = AgentStyle.macro,
    min_purity: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="The reviewer rejects a suggestion whose gap's largest label is "
        "under this share of its questions (0: reads only the suggestion's phrasings)")] = 0.6,
    cycles_per_week: Annotated[int, typer.Option(
        min=1, max=168, help="Cycles a week, each followed by the admin's review of their "
        "share of the week's decisions (7: daily, as a deployed bot's digest; 1 before)")] = 7,
    chart: Annotated[Path, typer.Option(help="PNG of resolution by week")] = Path(
        "replay.png"),
    data_dir: Annotated[Path | None, typer.Option(
        help="Where the simulated service keeps its data (default: a temporary directory)")
    ] = None,
) -> None:
    """Simulate weeks of traffic over a labelled question set with auto-training on."""
    import tempfile

    from core.replay import Replay, ReplayConfig, load_labelled

    try:
        labelled = load_labelled(data)
    except (OSError, ValueError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    with tempfile.TemporaryDirectory(prefix="autotrain-replay-") as tmp:
        settings = _settings(data_dir or Path(tmp))
        settings = settings.model_copy(update={"database_url": None, "chroma_url": None})
        svc = _services(settings)
        config = ReplayConfig(coverage=coverage, conversations_per_week=conversations,
                              decisions_per_week=decisions, weeks=weeks, seed=seed,
                              autonomy=autonomy, seed_phrasings=seed_phrasings,
                              off_topic=off_topic, agent_style=agent_style,
                              min_purity=min_purity, cycles_per_week=cycles_per_week)
        result = Replay(svc, data=labelled, config=config).run()
        svc.close()
    typer.echo(result.table())
    typer.echo(f"chart: {result.chart(chart)}")


@app.command()
def bench(phrasings: Annotated[list[int] | None, typer.Option(help="KB sizes for /answer")] = None,
          requests: int = 500) -> None:
    """Print embedding throughput, /answer latency over HTTP, and ingestion throughput."""
    from benchmarks.run import main as run_bench

    run_bench(phrasings=phrasings or [1_000, 10_000], requests=requests)


def main() -> None:
    try:
        app()
    except DomainError as exc:
        typer.secho(str(exc), fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
