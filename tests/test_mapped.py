"""vae_core.mapped.MappedRows: rows of a memory-mapped array, read only when asked."""
import numpy as np
import pytest

from vae_core import VAESpec
from vae_core.mapped import MappedRows
from vae_core.training import check_data


@pytest.fixture
def mapped(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    return images, np.load(tmp_path / "x.npy", mmap_mode="r")


def test_rows_are_read_by_position_in_the_index(mapped, monkeypatch):
    images, source = mapped
    index = np.array([1, 4, 9, 30])
    rows = MappedRows(source, index)
    assert rows.shape == (4, 5, 3) and len(rows) == 4 and rows.dtype == np.uint8
    np.testing.assert_array_equal(rows.take(np.array([3, 0, 0])), images[[30, 1, 1]])
    np.testing.assert_array_equal(rows[1], images[4])
    np.testing.assert_array_equal(rows[1:3], images[[4, 9]])
    np.testing.assert_array_equal(np.asarray(rows), images[index])
    flat = rows.reshape(4, 15)
    assert flat.shape == (4, 15) and np.shares_memory(flat.source, source)  # still the map, not a copy
    np.testing.assert_array_equal(flat.take(np.array([2])), images[[9]].reshape(1, 15))
    monkeypatch.setattr("vae_core.mapped.CHUNK_BYTES", 2 * 15)  # two rows per chunk
    assert [len(c) for c in flat.chunks()] == [2, 2]
    np.testing.assert_array_equal(np.concatenate(list(flat.chunks())), images[index].reshape(4, 15))


def test_float64_is_read_as_float32_and_an_in_memory_array_works_too(mapped):
    images, _ = mapped
    rows = MappedRows(images.astype(np.float64) / 255.0)  # not a map: no madvise, the same reads
    assert rows.dtype == np.float32 and rows.take(np.array([0])).dtype == np.float32
    np.testing.assert_array_equal(rows[0], (images[0] / 255.0).astype(np.float32))


@pytest.mark.parametrize("index, match", [(np.array([2, 1]), "sorted, unique"), (np.array([0, 40]), r"\[0, 40\)"),
                                          (np.array([-1]), "sorted, unique")])
def test_a_bad_index_is_refused(mapped, index, match):
    with pytest.raises(ValueError, match=match):
        MappedRows(mapped[1], index)


def test_fit_boundary_keeps_a_map_on_disk_and_checks_it(mapped, tmp_path):
    """check_data(stream=True) returns (N, D) rows still on disk; float values are checked chunk by chunk."""
    images, source = mapped
    spec = VAESpec(input_dim=15, hidden_dims=(4,), latent_dim=2, image_shape=(5, 3))
    rows = check_data(source, spec, "train", keep_uint8=True, stream=True)
    assert isinstance(rows, MappedRows) and rows.shape == (40, 15) and rows.dtype == np.uint8
    assert type(check_data(MappedRows(source), spec, "x")) is np.ndarray  # read whole where it is not streamed
    bad = images.astype(np.float32)  # 0-255: outside [0, 1] for the Bernoulli decoder
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"train must lie in \[0, 1\] .* got values in \[0, 255\]"):
        check_data(np.load(tmp_path / "bad.npy", mmap_mode="r"), spec, "train", keep_uint8=True, stream=True)
    bad[3, 2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad / 255)
    with pytest.raises(ValueError, match=r"train holds NaN or inf values in 1 example"):
        check_data(np.load(tmp_path / "nan.npy", mmap_mode="r"), spec, "train", keep_uint8=True, stream=True)
