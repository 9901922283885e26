"""Route modules of the HTTP API v1."""
