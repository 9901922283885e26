"""Per-bot Slack settings: the review channel (one bot per channel) and who may decide."""

from __future__ import annotations

import pytest

from core.settings import SettingsError, load_settings


def test_slack_settings_are_saved_and_cleaned(api, bot):
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", headers=api.admin, json={
        "slack_channel": " C0REVIEW1 ", "slack_approvers": ["U0ALICE1", "U0ALICE1", "W0BOB123"],
        "slack_approver_groups": ["S0ADMINS1"]})
    assert r.status_code == 200, r.text
    got = api.settings(bot.slug)
    assert (got["slack_channel"], got["slack_approvers"], got["slack_approver_groups"]) == \
        ("C0REVIEW1", ["U0ALICE1", "W0BOB123"], ["S0ADMINS1"])
    # An empty channel switches Slack review off for the bot.
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", headers=api.admin,
                         json={"slack_channel": ""})
    assert r.status_code == 200 and api.settings(bot.slug)["slack_channel"] is None


@pytest.mark.parametrize(("patch", "field", "words"), [
    ({"slack_channel": "#support"}, "slack_channel", "not a Slack channel id"),
    ({"slack_channel": "U0ALICE1"}, "slack_channel", "not a Slack channel id"),
    ({"slack_approvers": ["alice"]}, "slack_approvers", "not a Slack user id"),
    ({"slack_approvers": "U0ALICE1"}, "slack_approvers", "list"),
    ({"slack_approver_groups": ["U0ALICE1"]}, "slack_approver_groups", "user group id"),
])
def test_bad_slack_settings_are_422_naming_the_field(api, bot, patch, field, words):
    before = api.settings(bot.slug)
    r = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", headers=api.admin, json=patch)
    assert r.status_code == 422, r.text
    [err] = [e for e in r.json()["detail"] if field in e["loc"]]
    assert words in err["msg"]
    assert api.settings(bot.slug) == before


def test_a_channel_reviews_one_bot(api, bot, other_bot):
    ok = api.client.patch(f"/api/v1/bots/{bot.slug}/settings", headers=api.admin,
                          json={"slack_channel": "C0SHARED1"})
    assert ok.status_code == 200
    r = api.client.patch(f"/api/v1/bots/{other_bot.slug}/settings", headers=api.admin,
                         json={"slack_channel": "C0SHARED1"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "slack_channel"]
    assert f"already reviews bot '{bot.slug}'" in r.json()["detail"][0]["msg"]
    assert api.settings(other_bot.slug)["slack_channel"] is None
    # Several bots share the workspace, each with its own channel.
    r = api.client.patch(f"/api/v1/bots/{other_bot.slug}/settings", headers=api.admin,
                         json={"slack_channel": "C0OTHER12"})
    assert r.status_code == 200


@pytest.mark.parametrize(("env", "missing"), [
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
    ({"SLACK_SIGNING_SECRET": "secret"}, "SLACK_BOT_TOKEN"),
])
def test_half_a_slack_configuration_stops_start_up_naming_the_missing_half(tmp_path, env,
                                                                         missing):
    with pytest.raises(SettingsError, match=f"{missing} is not set"):
        load_settings(AUTOTRAIN_DATA_DIR=tmp_path, **env)
    assert load_settings(AUTOTRAIN_DATA_DIR=tmp_path).integrations()["slack"] == "off"
