"""Signed webhooks for other systems (issue #17 part 2, D29-I, docs/integrations.md)."""
