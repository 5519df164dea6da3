"""E-journals (Kundelik, BilimClass and successors): a day's attendance and late arrivals of a
school pushed through one adapter contract (contract.py), over OAuth2 client credentials."""
