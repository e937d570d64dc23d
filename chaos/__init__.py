"""Chaos runs against the real Paywindow stack: `python -m chaos.run [--quick]` (see chaos/run.py)."""
