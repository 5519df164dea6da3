"""Benchmarks: ``python -m bench`` lists them, ``python -m bench NAME`` runs one, prints a table
and writes ``bench/results/NAME.json`` (a list of {metric, value, unit, baseline, ratio, goal}).

Timing lives here, never in tests/. Every benchmark uses the real parts: the machine's
PostgreSQL (a throwaway database), a private Mosquitto on a free port, the ingest as a process.
"""
