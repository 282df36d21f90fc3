"""Framework backends of vae_core, one subpackage each, listed in `vae_core.registry.BACKENDS`. Each has the modules
of `vae_core.registry.BACKEND_MODULES` with the same public functions and signatures (tests/conformance/test_backend_surface.py
compares them):

- `__init__.py`: `VAE`, `build_model(spec, seed=None) -> VAE`, `fit`, `evaluate`;
- `model.py`: `VAE` (with `spec`, `backend_name`, `input_dim`, `latent_dim`, `neutral_layers`, `encode`,
  `reparameterize`, `decode`, `mean_of`, forward/`call`, `sample`, `reconstruct`, `interpolate`);
- `losses.py`: the per-example terms, `per_example` and `negative_elbo(x, decoder_out, mu, log_var, *, likelihood,
  beta, rows)` on framework tensors;
- `weights.py`: `native_parameters(model)`, `export_weights(model)`, `import_weights(model, weights)`,
  `export_adam(model, optimizer)`, `import_adam(model, optimizer, state)`, converting at the boundary to the
  neutral NumPy layout;
- `optim.py`: `make_optimizer(model, config)`, the Adam `fit` trains with (TF: `TorchAdam`, torch's update rule);
- `steps.py`: the training step, out of the model (TF: `train_step`/`test_step`, the bodies of the Keras hooks;
  torch: `make_step`, the step `fit` runs per batch);
- `device.py`: `resolve_device`, `exact_fp32`, `to_device`, `model_device`, `inference`: where the backend computes;
- `train.py`: `Trainer` (a `vae_core.train.backend.TrainerBackend`), `fit(model, train, val, config, ...)` and
  `evaluate(model, x)`;
- `metrics.py`: `log_weights`, `iwae_nll`, `posterior_means`, `active_units`;
- `distributed.py`: the processes or replicas of a data-parallel run.

What only one framework has is named in tests/conformance/test_backend_surface.py with its reason (TF's `pipeline.py`, the
tf.data blocks Keras' fit runs; torch's `launch.py`, torchrun for `vae train --nproc N`).

Only `vae_core.registry` imports these packages, and only when a backend is asked for.
"""
