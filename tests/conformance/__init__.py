"""Conformance: each user-facing behaviour, one test body run for every registered backend."""
