"""The web console: server-rendered pages (Jinja2, htmx) on the API's sessions and scopes
(D27-E)."""
