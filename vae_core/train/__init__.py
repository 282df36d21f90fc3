"""Training, written once for every backend: the epoch loop, the backend contract it drives, fit's arguments,
the per-epoch schedule, trainer state, resume, the processes of a run, and interruption."""
