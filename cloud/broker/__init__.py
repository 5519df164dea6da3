"""Broker-side pieces: the feature probe, and the ingest on a RabbitMQ cluster (D29-C)."""
