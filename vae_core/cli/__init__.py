"""The `vae` command line (`main`), one module per layer and per command.

- `entry`: `main(argv)`: parse, run the command, errors as one line and an exit status (`COMMANDS`)
- `parser`: `build_parser()`, the flags of every command
- `options`: spec and config fields as flags, `--config` files, run.json, and merging them (`resolve_train`)
- `common`: what several commands share: argument checks, loading data and a checkpoint's model, writing results
- `train`, `evaluate`, `score`, `sample`, `reconstruct`, `plot`, `compare`: the commands, each a `run(args)`
  (`compare` also holds `compare_backends`, which `scripts/compare_backends.py` uses; `score_sources` what `score`
  reads: the data, the reference, their CSV columns)
- `launch`: `vae train --nproc N`: torch's launcher (`backends.torch.launch`) in a subprocess, signals passed on
"""
from vae_core.cli.entry import main

__all__ = ["main"]
