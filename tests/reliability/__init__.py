"""Reliability: kill and resume, corruption, the run lock, refused writes, data-parallel runs."""
