"""The email channel: digests managers answer by replying, one-click links, inbound mail."""
