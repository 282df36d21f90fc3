"""Data in: built-in datasets, torchvision's datasets read from a root folder (`vae_core.data.vision`), the user's
own images, rows that stay in a memory-mapped file, map-style datasets read by index
(`vae_core.data.items.ItemRows`), and the checks that turn any of them into (N, D) rows."""
from vae_core.data.dataset import DATA_EXTRA, Dataset, binarize
from vae_core.data.datasets import BINARIZE_MODES, DATASETS, load_dataset
from vae_core.data.idx import read_idx
from vae_core.data.images import Images, load_images, read_images
from vae_core.data.mapped import MappedRows
from vae_core.data.vision import TORCHVISION_DATASETS

__all__ = ["BINARIZE_MODES", "DATASETS", "DATA_EXTRA", "Dataset", "Images", "MappedRows", "TORCHVISION_DATASETS",
           "binarize", "load_dataset", "load_images", "read_idx", "read_images"]
