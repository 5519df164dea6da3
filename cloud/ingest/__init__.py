"""MQTT ingest: decode event batches, store them, ack after commit."""
