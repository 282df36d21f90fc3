"""Plots: NumPy in, PNG out (matplotlib's Agg backend, imported only when a plot is made).

- `grids`: image grids (samples, reconstructions, traversals, interpolations);
- `curves`: training curves, one run or the two backends side by side;
- `latent`: latent-space scatter plots and t-SNE;
- `scores`: a histogram of per-example scores, over a reference set's, with a threshold;
- `gallery`: every plot of a trained model at once (`plot_all`), from a model of either backend;
- `figures`: the shared figure sizes, argument checks and saving.

Every function writes `path` and returns it as a Path; figures have a fixed size in inches, so a PNG is that
size times `dpi` pixels.
"""
from vae_core.viz.curves import plot_backend_comparison, plot_history
from vae_core.viz.gallery import plot_all
from vae_core.viz.grids import plot_image_grid, plot_interpolation, plot_reconstructions, plot_samples, plot_traversals
from vae_core.viz.latent import plot_latent_scatter, plot_tsne
from vae_core.viz.scores import plot_scores

__all__ = ["plot_all", "plot_backend_comparison", "plot_history", "plot_image_grid", "plot_interpolation",
           "plot_latent_scatter", "plot_reconstructions", "plot_samples", "plot_scores", "plot_traversals", "plot_tsne"]
