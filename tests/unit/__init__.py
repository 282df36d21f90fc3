"""The NumPy core, module by module (spec, losses, data, checkpoints, metrics, plots), and the layout and docs."""
