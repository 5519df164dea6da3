"""The Social Wallet adapter (docs/social-wallet.md): the connector contract, our HTTP
implementation of it, the outbox handler and reconciliation."""
