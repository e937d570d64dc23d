"""`python -m bench.run --mode full|quick`: the whole Paywindow stack on this machine, measured.

stack.py            brings up a fresh embedded Postgres (+ pg_stat_statements), the Temporal dev server,
                    the worker and the API (devstack's pieces), and stops them all on the way out
load.py             HTTP load: sequential and concurrent creates, open-loop arrivals, sandbox payments
measure.py          reads Postgres (expiry lag, stock, query counters) and process memory
breakdown.py        where a create's time goes (workflow histories + direct timings)
cron_comparator.py  the seeds' once-a-minute expiry job, on its own schema in the same Postgres
report.py           latest.json, docs/BENCHMARKS.md table, docs/bench-expiry-lag.png
run.py              the phases, in order, behind a progress bar
"""
