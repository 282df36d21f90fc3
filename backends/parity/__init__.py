"""The parity drivers: each check of the parity suite written once for both backends (`drivers`), and its
tolerances (`tolerances`). The tests in tests/parity and `scripts/parity_report.py` import them."""
