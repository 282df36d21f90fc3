"""`python -m vae_core.cli ...` is the `vae` command."""
import sys

from vae_core.cli import main

sys.exit(main())
