"""A TensorBoard event file written without TensorFlow or torch: scalars, PNG images and histograms.

TensorBoard reads `events.out.tfevents.*` files of `Event` protocol buffers, each framed as a TFRecord. The
`tensorboard` package holds both the protocol buffers (`tensorboard.compat.proto`) and the record framing
(`RecordWriter`, with its CRC), and neither imports TensorFlow; this module writes them synchronously, so that a
`flush()` has put every event into the file (tensorboard's own `EventFileWriter` would reach for `tf.io.gfile` when
TensorFlow is installed, importing it into a torch run) and a failed write raises where it happened.

Scalars are stored as `simple_value` (float32), as Keras 2, torch.utils.tensorboard and tensorboardX store them.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vae_core.data.dataset import import_optional

TENSORBOARD_EXTRA = 'pip install "vae-core[tensorboard]"'
HISTOGRAM_BINS = 30
_files = itertools.count()  # two writers of one process in one second get distinct file names


def tensorboard_modules(owner: str) -> tuple[Any, Any, Any]:
    """(event_pb2, summary_pb2, RecordWriter) from the `tensorboard` package, or an ImportError naming the extra."""
    proto = import_optional("tensorboard.compat.proto.event_pb2", owner, TENSORBOARD_EXTRA)
    summary = import_optional("tensorboard.compat.proto.summary_pb2", owner, TENSORBOARD_EXTRA)
    record = import_optional("tensorboard.summary.writer.record_writer", owner, TENSORBOARD_EXTRA)
    return proto, summary, record.RecordWriter


class EventWriter:
    """One event file in `folder` (created): `scalar`, `image`, `histogram`, `restart`, then `flush` and `close`."""

    def __init__(self, folder: str | os.PathLike):
        self._event, self._summary, record_writer = tensorboard_modules("vae_core.callbacks.TensorBoard")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                              f"{next(_files)}.v2")
        self._file = open(self.path, "wb")
        self._records = record_writer(self._file)
        self._write(self._event.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def _write(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def _value(self, step: int, **value: Any) -> None:
        summary = self._summary.Summary(value=[self._summary.Summary.Value(**value)])
        self._write(self._event.Event(wall_time=time.time(), step=int(step), summary=summary))

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._value(step, tag=tag, simple_value=float(value))

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        """pixels: (H, W, C) uint8, C 1 (grey) or 3 (RGB)."""
        height, width, channels = pixels.shape
        image = self._summary.Summary.Image(height=height, width=width, colorspace=channels,
                                            encoded_image_string=encode_png(pixels))
        self._value(step, tag=tag, image=image)

    def histogram(self, tag: str, values: np.ndarray, step: int, bins: int = HISTOGRAM_BINS) -> None:
        """The distribution of `values` (any shape, finite), in `bins` equal buckets over their range."""
        values = np.asarray(values, dtype=np.float64).ravel()
        counts, edges = np.histogram(values, bins=bins)
        # TensorBoard keeps each bucket's right edge only: an empty first bucket ending at the minimum gives the
        # left edge of the first real one (as torch.utils.tensorboard does)
        histo = self._summary.HistogramProto(
            min=float(values.min()), max=float(values.max()), num=float(values.size), sum=float(values.sum()),
            sum_squares=float(values @ values), bucket_limit=edges.tolist(), bucket=[0.0, *counts.tolist()])
        self._value(step, tag=tag, histo=histo)

    def restart(self, step: int) -> None:
        """A run (re)starting at `step`: TensorBoard drops the events of earlier files at this step and after (a
        resumed run's, or an older run's into the same folder), so each step shows the latest run's value."""
        log = self._event.SessionLog(status=self._event.SessionLog.START)
        self._write(self._event.Event(wall_time=time.time(), step=int(step), session_log=log))

    def flush(self) -> None:
        """Every event so far into the file (the OS holds it: a killed process loses none of it)."""
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def encode_png(pixels: np.ndarray) -> bytes:
    """(H, W, C) uint8, C 1 or 3, as a PNG file's bytes (8-bit grey or RGB, no filter, zlib level 6)."""
    height, width, channels = pixels.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * channels)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, {1: 0, 3: 2}[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))
