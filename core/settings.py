"""Service configuration read from the environment and `.env`, validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A configuration value is invalid; the message names the variable."""


class Settings(BaseSettings):
    """Every knob of the service. Unset integrations (Slack, SMTP, Redis, LLM) are simply off."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    data_dir: Path = Field(default=Path("./data"), validation_alias="AUTOTRAIN_DATA_DIR")
    api_key: SecretStr | None = Field(default=None, validation_alias="AUTOTRAIN_API_KEY")
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    chroma_url: str | None = Field(default=None, validation_alias="CHROMA_URL")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")

    embedder: Literal["onnx", "openai"] = Field(default="onnx",
                                                validation_alias="AUTOTRAIN_EMBEDDER")
    embedding_model: str = Field(
        default="text-embedding-3-small", validation_alias="AUTOTRAIN_EMBEDDING_MODEL"
    )
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    llm_model: str | None = Field(default=None, validation_alias="AUTOTRAIN_LLM_MODEL")
    # auto: the LLM when a model and an endpoint are configured, else offline drafting.
    generator: Literal["auto", "offline", "llm"] = Field(
        default="auto", validation_alias="AUTOTRAIN_GENERATOR")
    llm_concurrency: int = Field(default=4, ge=1, le=64,
                                 validation_alias="AUTOTRAIN_LLM_CONCURRENCY")
    llm_timeout_seconds: float = Field(default=30.0, gt=0, le=600,
                                       validation_alias="AUTOTRAIN_LLM_TIMEOUT_SECONDS")
    # llama.cpp's server can constrain sampling to the reply's JSON schema: small local models
    # then always answer in the shape asked for. OpenAI's API refuses the extra field.
    llm_enforce_schema: bool = Field(default=False,
                                     validation_alias="AUTOTRAIN_LLM_ENFORCE_SCHEMA")

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias="SLACK_SIGNING_SECRET"
    )
    slack_api_base_url: str = Field(
        default="https://slack.com/api/", validation_alias="SLACK_API_BASE_URL"
    )

    smtp_host: str | None = Field(default=None, validation_alias="SMTP_HOST")
    smtp_port: int = Field(default=587, ge=1, le=65535, validation_alias="SMTP_PORT")
    smtp_username: str | None = Field(default=None, validation_alias="SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, validation_alias="SMTP_PASSWORD")
    smtp_tls: Literal["starttls", "tls", "none"] = Field(
        default="starttls", validation_alias="SMTP_TLS"
    )
    email_from: str = Field(default="autotrain@localhost", validation_alias="EMAIL_FROM")
    # Where replies go, with a per-recipient key: "autotrain+{key}@support.example.com". Unset:
    # digests carry no reply address and say so (one-click links still work).
    email_reply_to: str | None = Field(default=None, validation_alias="EMAIL_REPLY_TO")
    # Reply keys and one-click links stop working after this many days.
    email_key_days: int = Field(default=14, ge=1, le=365, validation_alias="EMAIL_KEY_DAYS")
    # Trust Authentication-Results only from this authserv-id (your own MX); unset: no check.
    email_dmarc_authserv_id: str | None = Field(default=None,
                                                validation_alias="EMAIL_DMARC_AUTHSERV_ID")
    email_max_bytes: int = Field(default=10 * 1024 * 1024, ge=10_000, le=100 * 1024 * 1024,
                                 validation_alias="EMAIL_MAX_BYTES")
    # POST /email/inbound (a mail provider's webhook) needs this as a bearer token.
    inbound_secret: SecretStr | None = Field(default=None,
                                             validation_alias="AUTOTRAIN_INBOUND_SECRET")
    # Signs one-click links; unset, a random one is made once and kept in the data dir.
    secret_key: SecretStr | None = Field(default=None, validation_alias="AUTOTRAIN_SECRET_KEY")
    # The built-in SMTP listener for replies (a dedicated MX or a relay's target).
    smtp_listen_port: int | None = Field(default=None, ge=0, le=65535,
                                         validation_alias="AUTOTRAIN_SMTP_LISTEN_PORT")
    smtp_listen_host: str = Field(default="127.0.0.1",
                                  validation_alias="AUTOTRAIN_SMTP_LISTEN_HOST")
    imap_host: str | None = Field(default=None, validation_alias="IMAP_HOST")
    imap_port: int = Field(default=993, ge=1, le=65535, validation_alias="IMAP_PORT")
    imap_username: str | None = Field(default=None, validation_alias="IMAP_USERNAME")
    imap_password: SecretStr | None = Field(default=None, validation_alias="IMAP_PASSWORD")
    imap_tls: Literal["tls", "starttls", "none"] = Field(default="tls",
                                                         validation_alias="IMAP_TLS")
    imap_mailbox: str = Field(default="INBOX", validation_alias="IMAP_MAILBOX")
    imap_poll_seconds: int = Field(default=30, ge=5, le=3600,
                                   validation_alias="IMAP_POLL_SECONDS")

    cycle_interval_minutes: int = Field(
        default=60, ge=1, le=7 * 24 * 60, validation_alias="AUTOTRAIN_CYCLE_INTERVAL_MINUTES"
    )
    public_url: str = Field(default="http://127.0.0.1:8000",
                            validation_alias="AUTOTRAIN_PUBLIC_URL")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias="AUTOTRAIN_LOG_LEVEL"
    )
    # auto: text at a terminal, one JSON object a line otherwise (README "Deploy", Logs).
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", validation_alias="AUTOTRAIN_LOG_FORMAT"
    )

    @field_validator("api_key", "openai_api_key", "llm_model", "slack_bot_token",
                     "slack_signing_secret", "smtp_host", "smtp_username", "smtp_password",
                     "email_reply_to", "email_dmarc_authserv_id", "inbound_secret",
                     "secret_key", "smtp_listen_port", "imap_host", "imap_username",
                     "imap_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `SLACK_BOT_TOKEN=` in a .env or compose file means "not set", not an empty secret
        # that turns the integration on and fails at the first request.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split(":", 1)[0]
        if not scheme.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        if scheme in ("postgresql", "postgres"):
            # SQLAlchemy's bare scheme means psycopg2, which we do not ship.
            value = "postgresql+psycopg" + value[len(scheme) :]
        return value

    @field_validator("chroma_url", "redis_url", "openai_base_url", "slack_api_base_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlparse(value)
        if not parsed.scheme or not parsed.netloc:
            raise ValueError("must be an absolute URL such as http://host:port")
        return value

    @model_validator(mode="after")
    def _slack_in_pairs(self) -> Settings:
        # Half a Slack configuration is a mistake, not "Slack off": say which half is missing.
        if (self.slack_bot_token is None) != (self.slack_signing_secret is None):
            missing = "SLACK_SIGNING_SECRET" if self.slack_signing_secret is None \
                else "SLACK_BOT_TOKEN"
            raise ValueError(f"Slack needs both SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET: "
                             f"{missing} is not set")
        return self

    @field_validator("email_reply_to")
    @classmethod
    def _reply_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        local, at, domain = value.partition("@")
        if value.count("{key}") != 1 or "{key}" not in local or not at or "." not in domain:
            raise ValueError("must be an address with {key} once before the @, such as "
                             "autotrain+{key}@support.example.com")
        return value

    @field_validator("email_from")
    @classmethod
    def _an_address(cls, value: str) -> str:
        from email.utils import parseaddr

        if "@" not in parseaddr(value)[1]:
            raise ValueError("must be an email address, such as autotrain@support.example.com")
        return value

    @model_validator(mode="after")
    def _imap_complete(self) -> Settings:
        if self.imap_host and not (self.imap_username and self.imap_password):
            missing = "IMAP_USERNAME" if not self.imap_username else "IMAP_PASSWORD"
            raise ValueError(f"IMAP polling needs IMAP_HOST, IMAP_USERNAME and IMAP_PASSWORD: "
                             f"{missing} is not set")
        return self

    @model_validator(mode="after")
    def _llm_when_asked(self) -> Settings:
        if self.generator == "llm" and not self.llm_enabled:
            raise ValueError("AUTOTRAIN_GENERATOR=llm needs AUTOTRAIN_LLM_MODEL and "
                             "OPENAI_BASE_URL or OPENAI_API_KEY")
        return self

    # -- derived ---------------------------------------------------------

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'autotrain.db').resolve()}"

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def mail_outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def llm_enabled(self) -> bool:
        return bool(self.llm_model and (self.openai_base_url or self.openai_api_key))

    @property
    def uses_llm(self) -> bool:
        """Whether suggestions are drafted by the LLM (else offline)."""
        return self.generator == "llm" or (self.generator == "auto" and self.llm_enabled)

    @property
    def slack_enabled(self) -> bool:
        return self.slack_bot_token is not None and self.slack_signing_secret is not None

    @property
    def smtp_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def imap_enabled(self) -> bool:
        return bool(self.imap_host)

    @property
    def email_address(self) -> str:
        """Our own sending address (mail from it coming back in is ours, never acted on)."""
        from email.utils import parseaddr

        return parseaddr(self.email_from)[1].lower()

    def link_secret(self) -> str:
        """The key that signs one-click links: AUTOTRAIN_SECRET_KEY, else one made at random
        the first time and kept in the data dir (readable by the owner only), so links
        survive a restart."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        import os
        import secrets

        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            try:
                os.link(draft, path)  # whole or not at all; a process that lost reads theirs
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text().strip()

    def integrations(self) -> dict[str, str]:
        """What is on and off, for the start-up banner (never a secret)."""
        return {
            "database": "postgresql" if self.database_url and "postgres" in self.database_url
            else "sqlite",
            "vector index": f"chroma server {self.chroma_url}" if self.chroma_url
            else "embedded chroma",
            "jobs": "arq on redis" if self.redis_url else "in-process",
            "generation": f"llm {self.llm_model}" if self.uses_llm else "offline",
            "slack": "on" if self.slack_enabled else "off",
            "email": "smtp" if self.smtp_enabled else f"files in {self.mail_outbox_dir}",
            "email replies": ", ".join(filter(None, [
                f"smtp listener on {self.smtp_listen_host}:{self.smtp_listen_port}"
                if self.smtp_listen_port is not None else None,
                f"imap {self.imap_host}" if self.imap_enabled else None,
                "webhook" if self.inbound_secret is not None else None])) or "off",
        }


def load_settings(**overrides: object) -> Settings:
    """Read settings; a bad value raises SettingsError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:
                # A rule across several variables: its message names them.
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            name = str(err["loc"][0])
            alias = Settings.model_fields[name].validation_alias if name in Settings.model_fields \
                else name
            problems.append(f"{alias or name}: {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
