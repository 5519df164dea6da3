"""Static console pages served by the API."""
