"""HTTP API (FastAPI)."""
