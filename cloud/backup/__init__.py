"""Backups of the database: WAL archiving, base backups, restore to a point in time (D29-A)."""
