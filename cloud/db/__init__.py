"""Database access: plain psycopg 3 connections and the SQL migrations."""

from cloud.db.conn import connect

__all__ = ["connect"]
