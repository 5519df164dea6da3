"""Web Push notifications to guardians and school staff (docs/push.md)."""
