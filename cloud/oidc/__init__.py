"""We are an OpenID Connect provider (issue #17 part 1, D29-F): learning platforms sign our
students, staff and guardians in. Built on Authlib's authorization server (server.py); keys,
clients, claims and issued credentials are ours, in PostgreSQL (migrations 0043-0044)."""
