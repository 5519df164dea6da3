"""Device provisioning (claim tokens, broker accounts) and whitelist distribution storage."""
