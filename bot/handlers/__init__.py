"""Slack action, view and command handlers: ack, parse, one call into core.policy, re-render."""
