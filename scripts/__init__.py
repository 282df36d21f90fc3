"""Benchmarks, reports and generators of committed files. Run each from the repository root as a module:
`python -m scripts.<name>` (e.g. `python -m scripts.bench_torch`)."""
