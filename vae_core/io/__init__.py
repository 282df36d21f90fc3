"""Files: the checkpoint schema, atomic writes, a run's output folder and its lock."""
