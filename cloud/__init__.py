"""qadam cloud service: ingest (MQTT -> PostgreSQL), HTTP API, domain logic."""
