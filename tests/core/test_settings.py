"""Settings: defaults are the embedded mode, bad values name the variable, secrets stay secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for var in ("DATABASE_URL", "CHROMA_URL", "REDIS_URL", "SLACK_BOT_TOKEN", "SMTP_HOST",
                "AUTOTRAIN_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(AUTOTRAIN_DATA_DIR=tmp_path)
    assert s.sqlalchemy_url.startswith("sqlite:///") and str(tmp_path) in s.sqlalchemy_url
    assert s.integrations() == {
        "database": "sqlite", "vector index": "embedded chroma", "jobs": "in-process",
        "generation": "offline", "slack": "off", "email": f"files in {tmp_path / 'outbox'}",
        "email replies": "off"}


def test_an_empty_variable_is_unset_not_an_empty_secret(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # `SLACK_BOT_TOKEN=` left in a .env or a compose file.
    monkeypatch.chdir(tmp_path)
    s = load_settings(AUTOTRAIN_DATA_DIR=tmp_path, SLACK_BOT_TOKEN="", SLACK_SIGNING_SECRET=" ",
                      SMTP_HOST="", AUTOTRAIN_API_KEY="")
    assert s.integrations()["slack"] == "off" and not s.smtp_enabled and s.api_key is None
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET is not set"):
        load_settings(AUTOTRAIN_DATA_DIR=tmp_path, SLACK_BOT_TOKEN="xoxb-1",
                      SLACK_SIGNING_SECRET="")


@pytest.mark.parametrize(("var", "value"), [
    ("SMTP_PORT", "not-a-port"), ("SMTP_PORT", "70000"), ("DATABASE_URL", "mysql://db/x"),
    ("CHROMA_URL", "localhost"), ("SMTP_TLS", "maybe"), ("AUTOTRAIN_CYCLE_INTERVAL_MINUTES", "0"),
    ("AUTOTRAIN_GENERATOR", "gpt"), ("AUTOTRAIN_LLM_CONCURRENCY", "0"),
    ("AUTOTRAIN_LLM_TIMEOUT_SECONDS", "-1"),
])
def test_a_bad_value_names_the_variable(var: str, value: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings()


def test_postgres_urls_use_psycopg3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/autotrain")
    assert load_settings().sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/autotrain"


def test_secrets_never_appear_in_reprs_or_logs(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    secrets = {"AUTOTRAIN_API_KEY": "adm-s3cret", "OPENAI_API_KEY": "sk-s3cret",
               "SLACK_BOT_TOKEN": "xoxb-s3cret", "SLACK_SIGNING_SECRET": "sign-s3cret",
               "SMTP_PASSWORD": "smtp-s3cret"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s %r %s", s, s, s.integrations())
    text = repr(s) + str(s.model_dump()) + caplog.text
    for v in secrets.values():
        assert v not in text
    assert s.slack_enabled and s.api_key is not None
    assert s.api_key.get_secret_value() == "adm-s3cret"


def test_the_llm_drafts_only_when_a_model_and_an_endpoint_are_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("AUTOTRAIN_LLM_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "AUTOTRAIN_GENERATOR"):
        monkeypatch.delenv(var, raising=False)
    assert load_settings().uses_llm is False
    local = {"AUTOTRAIN_LLM_MODEL": "smollm2", "OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}
    assert load_settings(**local).uses_llm is True
    assert load_settings(**local, AUTOTRAIN_GENERATOR="offline").uses_llm is False
    # asking for the LLM without saying which one is refused at start-up, naming the variable
    with pytest.raises(SettingsError, match=r"AUTOTRAIN_GENERATOR.*AUTOTRAIN_LLM_MODEL"):
        load_settings(AUTOTRAIN_GENERATOR="llm")
