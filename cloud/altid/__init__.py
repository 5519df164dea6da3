"""Alternative identification with consent (issue #17 part 3, docs/altid.md, D29-J)."""
