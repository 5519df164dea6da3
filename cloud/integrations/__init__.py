"""Integrations with other school systems (issue #17 part 2, D29-I)."""
