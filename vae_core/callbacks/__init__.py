"""Callbacks for `fit` in every backend: the `Callback` base (Keras' hook names and meanings) and the built-in
ones. The trainer's side (when each hook is called, stops, ranks) is `vae_core.train.callbacks`.

Built in: `TensorBoard` (curves, image grids, latent histograms as TensorBoard event files; the `tensorboard`
extra) and `MLflow` (params, metrics, plots and the best checkpoint as an MLflow run; the `mlflow` extra). Their
packages are imported when one is made, never by `import vae_core`.
"""
from vae_core.callbacks.mlflow import MLflow
from vae_core.callbacks.tensorboard import TensorBoard
from vae_core.train.callbacks import Callback, CallbackError

__all__ = ["Callback", "CallbackError", "MLflow", "TensorBoard"]
