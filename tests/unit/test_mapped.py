"""vae_core.data.mapped.MappedRows: rows of a memory-mapped array, read only when asked."""
import mmap

import numpy as np
import pytest

from vae_core import TrainConfig, VAESpec
from vae_core.data.mapped import MappedRows, is_mapped
from vae_core.data.rows import check_data
from vae_core.train.arguments import check_fit_inputs


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
    monkeypatch.setattr("vae_core.data.mapped.CHUNK_BYTES", 2 * 15)  # two rows per chunk
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


def test_only_a_c_contiguous_view_of_a_file_map_is_streamed(mapped):
    _, source = mapped
    assert is_mapped(source) and is_mapped(source[3:])
    assert not is_mapped(source.copy())  # still a np.memmap, but in memory
    assert not is_mapped(source[::2]) and not is_mapped(np.asfortranarray(source))
    with pytest.raises(ValueError, match=r"copy=False\) cannot avoid reading"):
        np.asarray(MappedRows(source), copy=False)


def test_a_batch_asks_for_exactly_its_rows_pages_in_merged_runs(tmp_path, monkeypatch):
    """madvise(WILLNEED) covers every byte of the rows a batch reads, page-aligned, one call per run of pages."""
    page = mmap.PAGESIZE
    rows_bytes = 1000  # rows straddle page boundaries
    np.save(tmp_path / "x.npy", np.zeros((64, rows_bytes), np.uint8))
    view = np.load(tmp_path / "x.npy", mmap_mode="r")[7:]  # data starts at no page boundary
    rows = MappedRows(view)
    calls = []
    monkeypatch.setattr(rows, "_mapping", type("Recorder", (), {"madvise": lambda self, *a: calls.append(a)})())
    positions = np.array([40, 3, 4, 20])  # rows 3 and 4 are adjacent: one run
    rows.take(positions)
    assert all(option == mmap.MADV_WILLNEED and start % page == 0 for option, start, _ in calls)
    covered = set().union(*(range(start, start + length) for _, start, length in calls))
    start = view.__array_interface__["data"][0] - np.frombuffer(view._mmap, np.uint8).__array_interface__["data"][0]
    for p in positions:
        assert set(range(start + p * rows_bytes, start + (p + 1) * rows_bytes)) <= covered
    assert len(calls) == 3 and len(covered) < 6 * page  # 4 rows of 1000 bytes: 3 runs, no more pages than needed


def test_dynamic_binarization_reads_a_mapped_training_set_into_memory_with_a_warning(mapped):
    _, source = mapped
    spec = VAESpec(input_dim=15, hidden_dims=(4,), latent_dim=2, image_shape=(5, 3))
    with pytest.warns(UserWarning, match=r"read into memory: TrainConfig.dynamic_binarization .* "
                                         r"dynamic_binarization=False to read it from disk"):
        train, _ = check_fit_inputs(spec, source, None, TrainConfig(dynamic_binarization=True))
    assert type(train) is np.ndarray and train.shape == (40, 15)
    assert isinstance(check_fit_inputs(spec, source, None, TrainConfig())[0], MappedRows)
