"""The outbox: rows written in the same transaction as what they tell, delivered at least once
(invariant 6). ``contract`` is what a delivery handler implements; the runner that claims and
delivers rows is ``cloud.workers.outbox``."""
