"""Authentication (argon2 passwords, opaque bearer sessions) and authorisation (roles, scopes)."""
