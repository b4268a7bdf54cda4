"""Benchmarks of the workbench: `make bench` (or `python -m bench.run`) prints a table and writes
`bench/results.json`. One module per section; `common` holds timing, machine facts and the table."""
