"""One image file read the same way by `load_images`/`read_images` and torchvision's image folder, with nothing
changed silently:

- the EXIF orientation is applied (Pillow's `ImageOps.exif_transpose`): a photo taken upright reads upright, with
  its height and width as shown;
- 16-bit grey files (Pillow modes "I;16", "I;16B", "I;16L", "I;16N", and "I" holding values in 0..65535) keep their
  levels: float32 pixels, each value divided by 65535, the full range of the 16-bit type (not the file's own
  minimum and maximum, so every file of a folder is scaled alike; an 8-bit file beside them is divided by 255).
  Pillow's own conversion to "L" would clip them to 0..255;
- an animated file (an APNG, a GIF of several frames, a multi-page TIFF) is refused by name: only its first frame
  would be read. A camera's multi-picture JPEG (Pillow's "MPO") is read as its first, main picture;
- a 32-bit float file (mode "F") is refused by name: converting it to 8 bits clips it;
- a file Pillow cannot read is refused by name.

`IMAGE_SUFFIXES` are the files read; `skipped_note` is the one line that counts the others.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

# The files read as images (Pillow reads them all); any other file of a folder is skipped and counted.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MODES = ("L", "RGB")  # grey levels (C = 1) or colour (C = 3)
GREY_MODES = ("1", "L")  # Pillow modes read as "L" without being asked
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit grey (and "I": 32-bit ints, read when 0..65535)
DEEP_MAX = 65535  # a 16-bit level: divided by this
ORIENTATION = 0x0112  # the EXIF tag
_SWAPS = (5, 6, 7, 8)  # orientations that turn the stored image by 90 degrees: height and width swap


def pillow(owner: str, extra: str) -> Any:
    """`PIL.Image`, or the ImportError that says how to install it (`extra`: the pip command)."""
    try:
        from PIL import Image
    except ModuleNotFoundError:
        raise ImportError(f"{owner}: reading image files needs Pillow; {extra}") from None
    return Image


def read_mode(mode: str) -> str:
    """The mode a file is read as without `mode` given: "L" for grey files of any depth, else its own."""
    return "L" if mode in GREY_MODES or mode in DEEP_MODES else mode


def open_checked(image: Any, file: str | Path, owner: str) -> None:
    """Refuse an opened file that would be read wrong: animated (several frames) or 32-bit float."""
    frames = getattr(image, "n_frames", 1) if getattr(image, "is_animated", False) else 1
    if frames > 1 and image.format != "MPO":
        raise ValueError(f"{owner}: {str(file)!r} is animated ({frames} frames): only its first frame would be read; "
                         f"save the frames you want as still images (PIL.ImageSequence) or remove the file")
    if image.mode == "F":
        raise ValueError(f"{owner}: {str(file)!r} holds 32-bit float pixels (Pillow mode 'F'), which converting "
                         f"to 8 bits would clip; save it as an 8- or 16-bit PNG, or pass the images as a .npy of "
                         f"floats in [0, 1]")


def upright_size(image: Any) -> tuple[int, int]:
    """(W, H) of an opened file once its EXIF orientation is applied, from its header where it can be: a PNG's
    EXIF is in `info` when it comes before the pixels (Pillow's `getexif` would decode a PNG to look further)."""
    if image.format == "PNG" and not {"exif", "Raw profile type exif"} & set(image.info):
        return image.size
    try:
        orientation = image.getexif().get(ORIENTATION, 1)
    except Exception:  # a damaged EXIF block: decoding the file says what is wrong with it
        orientation = 1
    return image.size[::-1] if orientation in _SWAPS else image.size


def read_upright(file: str | Path, owner: str, extra: str) -> Any:
    """The decoded image of `file`, its EXIF orientation applied; refused by name when Pillow cannot read it, it is
    animated, or it holds float pixels."""
    Image = pillow(owner, extra)
    from PIL import ImageOps

    try:
        with Image.open(file) as image:
            open_checked(image, file, owner)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:  # damaged, unknown or huge
        if isinstance(e, ValueError) and str(e).startswith(f"{owner}: "):
            raise
        raise ValueError(f"{owner}: {str(file)!r} is not a readable image ({e}); remove or replace it") from None
    return image


def pixels(image: Any, mode: str, size: tuple[int, int] | None, file: str | Path, owner: str) -> np.ndarray:
    """An upright image as (H, W, C) pixels of `mode` ("L" or "RGB"), resized (bilinear) to `size` (H, W) when
    given: uint8 for an 8-bit file, float32 in [0, 1] for a 16-bit one (levels / 65535, see the module docstring)."""
    from PIL import Image

    target = None if size is None else (int(size[1]), int(size[0]))  # Pillow's (W, H)
    if image.mode not in DEEP_MODES:
        image = image.convert(mode)
        if target is not None and image.size != target:
            image = image.resize(target, Image.Resampling.BILINEAR)
        array = np.asarray(image, np.uint8)
        return array[..., None] if array.ndim == 2 else array
    levels = np.asarray(image)
    low, high = (int(levels.min()), int(levels.max())) if levels.size else (0, 0)
    if low < 0 or high > DEEP_MAX:
        raise ValueError(f"{owner}: {str(file)!r} holds 32-bit integer pixels in [{low}, {high}]; images are read as "
                         f"8-bit (0..255) or 16-bit (0..65535) levels: save it as a 16-bit PNG, or pass the images as "
                         f"a .npy of floats in [0, 1]")
    grey = levels.astype(np.float32) / np.float32(DEEP_MAX)  # (H, W) in [0, 1]: every level kept
    if target is not None and image.size != target:
        grey = np.asarray(Image.fromarray(grey, "F").resize(target, Image.Resampling.BILINEAR), np.float32)
        grey = np.clip(grey, 0.0, 1.0)
    grey = grey[..., None]
    return np.repeat(grey, 3, axis=2) if mode == "RGB" else grey


def as_unit_floats(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Images of one folder in one dtype: unchanged when all are uint8, else all float32 in [0, 1] (uint8 / 255)."""
    if all(a.dtype == np.uint8 for a in arrays):
        return arrays
    return [a.astype(np.float32) / np.float32(255.0) if a.dtype == np.uint8 else a for a in arrays]


def skipped_note(owner: str, folder: Path, skipped: Iterable[Path]) -> str | None:
    """The one line that counts the files of `folder` that are not read, by extension; None when there are none."""
    counts = Counter(p.suffix.lower() or "(no extension)" for p in skipped)
    if not counts:
        return None
    kinds = ", ".join(f"{n} {suffix}" for suffix, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    total = sum(counts.values())
    files = "1 file that is" if total == 1 else f"{total} files that are"
    return (f"{owner}: skipped {files} not images in {str(folder)!r} ({kinds}); it reads "
            f"{'/'.join(IMAGE_SUFFIXES)} files")

