"""The review channels managers already use: Slack cards and commands, and email digests."""
