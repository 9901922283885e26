"""The domain: knowledge base, analysis pipeline and policy; no web, Slack or queue framework."""
