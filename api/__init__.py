"""The HTTP API: FastAPI routes over the domain (spec: ../shared/spec/http-api-v1.md)."""
