"""The read API for platforms: machine clients (OAuth2 client credentials) reading the
attendance and meals of the schools their registration names (D29-I, docs/integrations.md)."""
