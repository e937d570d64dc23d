"""`python -m bench.run --mode full|quick`: the whole Paywindow stack on this machine, measured.

run.py              command line, progress bar, results out; Ctrl-C / SIGTERM / errors stop everything;
                    the stack (devstack/stack.py) fresh under a temp DATA_DIR, Postgres preloading
                    pg_stat_statements
phases.py           the phases in order, each bounded in time: creates, idle, one order's life, steady
                    arrivals, a storm of shared deadlines, memory with many open orders
load.py             HTTP load: concurrency 1 and 32, open-loop arrivals, sandbox payments
measure.py          what is read back: orders and stock from Postgres, pg_stat_statements, CPU and RSS
breakdown.py        where the time goes: workflow histories, direct timings, py-spy buckets
cron_comparator.py  expiry by a once-a-minute polling job (cron), on its own schema in the same Postgres
report.py           bench/results/*.json, the generated block of docs/BENCHMARKS.md, the lag plot
"""
