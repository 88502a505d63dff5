"""Training's windows read from a store decode each chunk once and equal numpy slices."""

import numpy as np
import zarr

from qgzoo.data import checksums
from qgzoo.data.reference import ReferenceData


class CountingArray:
    """A zarr array that counts the reads that reach it."""

    def __init__(self, array):
        self.array, self.reads = array, 0
        self.shape, self.dtype, self.chunks, self.path = (array.shape, array.dtype, array.chunks,
                                                           array.path)

    def __getitem__(self, key):
        self.reads += 1
        return self.array[key]


def test_windows_across_chunks_read_each_chunk_once_and_equal_numpy_slices(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 10, 2, 4, 4))  # runs, time (chunks of 4: 4 + 4 + 2), ...
    array = zarr.create_array(tmp_path / "a.zarr", shape=values.shape, chunks=(1, 4, 2, 4, 4),
                              dtype="f8")
    array[...] = values
    counting = CountingArray(array)
    checked = checksums.CheckedArray(counting, tmp_path / "a.zarr", fail=RuntimeError)
    data = ReferenceData({name: checked for name in ("q", "u", "v", "q_forcing_total",
                                                     "q_subgrid_forcing")}, n_test_runs=1)
    runs, starts = [0, 1, 1, 2, 0, 1], [0, 3, 2, 7, 1, 6]
    windows = data.windows("q", runs, starts, 3)  # [3, 6) and [7, 10) cross chunk boundaries
    expected = np.stack([values[r, s:s + 3] for r, s in zip(runs, starts)])
    np.testing.assert_array_equal(windows, expected)
    # chunks touched: run 0 block 0; run 1 blocks 0, 1, 2; run 2 blocks 1, 2
    assert counting.reads == 6
    data.windows("q", runs, starts, 3)
    assert counting.reads == 6  # all kept
    # A split's views read through the same chunks; other keys read as before.
    train = data.split("train")
    np.testing.assert_array_equal(train.windows("q", [1], [8], 2), values[1:2, 8:10])
    np.testing.assert_array_equal(np.asarray(checked[2]), values[2])
    np.testing.assert_array_equal(checked[1, 9:20], values[1, 9:10])  # clipped, as numpy


def test_the_cache_drops_the_least_recently_used_chunk_beyond_its_budget():
    cache = checksums.ChunkCache(max_bytes=2 * 80)
    reads = []

    def read(key):
        reads.append(key)
        return np.zeros(10)  # 80 bytes

    for key in ["a", "b", "a", "c", "a", "b"]:
        cache.get(key, lambda key=key: read(key))
    # a, b kept; a used again; c pushes out b (least recent); a kept; b read again
    assert reads == ["a", "b", "c", "b"]
    assert cache.nbytes == 160
