"""Framework backends of vae_core. Each subpackage has the same modules and signatures:

- `__init__.py`: `VAE`, `build_model(spec, seed=None) -> VAE`, `fit`, `evaluate`;
- `model.py`: `VAE` (with `spec`, `backend_name`, `encode`, `reparameterize`, `decode`, forward/`call`,
  `sample`, `reconstruct`, `interpolate`);
- `losses.py`: `negative_elbo(x, decoder_out, mu, log_var, *, likelihood, beta)` on framework tensors;
- `weights.py`: `export_weights(model)`, `import_weights(model, weights)`, `export_adam(model, optimizer)`,
  `import_adam(model, optimizer, state)`, converting at the boundary to the neutral NumPy layout;
- `train.py`: `fit(model, train, val, config, ...)` and `evaluate(model, x)`.

Only `vae_core.registry` imports these packages, and only when a backend is asked for.
"""
