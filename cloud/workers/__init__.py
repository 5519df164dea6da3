"""Background workers (clock correction, outbox delivery): later issues."""
