"""E-mail: the queue of messages (outbox) and their SMTP delivery (docs/email.md, D28-B)."""
