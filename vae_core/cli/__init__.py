"""The `vae` command line: `app` (the commands and `main`), `options` (spec and config fields as flags and config
files) and `compare` (train both backends and compare their curves)."""
from vae_core.cli.app import main

__all__ = ["main"]
