"""Application services: what the product does, whichever transport asks (the HTTP API today).

They take plain arguments (a connection, the Temporal client, settings, the caller), return the
answer models of services/schemas.py and refuse by code (services/errors.py). They never import
FastAPI, Starlette or api/ (tests/test_layers.py)."""
