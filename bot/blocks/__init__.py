"""Block Kit builders: pure functions from a view object to Slack blocks."""
