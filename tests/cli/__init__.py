"""The `vae` command, the bad-input catalogue, and the seed's own code as a client."""
