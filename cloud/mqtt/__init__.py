"""Our own MQTT 3.1.1 client for the ingest: packet core (packets.py) and session (session.py)."""
