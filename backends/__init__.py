"""Framework backends of vae_core. Each subpackage has the same modules and signatures
(tests/test_backend_surface.py compares them):

- `__init__.py`: `VAE`, `build_model(spec, seed=None) -> VAE`, `fit`, `evaluate`;
- `model.py`: `VAE` (with `spec`, `backend_name`, `input_dim`, `latent_dim`, `neutral_layers`, `encode`,
  `reparameterize`, `decode`, `mean_of`, forward/`call`, `sample`, `reconstruct`, `interpolate`);
- `losses.py`: the per-example terms, `per_example` and `negative_elbo(x, decoder_out, mu, log_var, *, likelihood,
  beta, rows)` on framework tensors;
- `weights.py`: `native_parameters(model)`, `export_weights(model)`, `import_weights(model, weights)`,
  `export_adam(model, optimizer)`, `import_adam(model, optimizer, state)`, converting at the boundary to the
  neutral NumPy layout;
- `optim.py`: `make_optimizer(model, config)`, the Adam `fit` trains with (TF: `TorchAdam`, torch's update rule);
- `train.py`: `resolve_device`, `fit(model, train, val, config, ...)` and `evaluate(model, x)`;
- `metrics.py`: `log_weights`, `iwae_nll`, `posterior_means`, `active_units`.

Only `vae_core.registry` imports these packages, and only when a backend is asked for.
"""
