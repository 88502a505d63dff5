"""Integrity of reference stores: the manifest of checksums, and reads chunk by chunk.

A complete store holds ``checksums.json``: the size (bytes) and SHA-256 of
every file inside the store's folders, that is every group's and array's
metadata and every chunk. The files at the store's top level are left out:
the root ``zarr.json``, whose attributes are rewritten when the build
completes (the spec they hold is recorded by its hash instead), and the
manifest itself. The build writes the manifest atomically after the last
chunk and before it marks the store complete, so a store marked complete has a
manifest that matches it, wherever the build was killed.

Each chunk also ends with a CRC-32C (zarr's ``crc32c`` codec), so damaged
bytes fail to decode instead of decoding to wrong numbers, while zarr reads a
missing chunk file as its fill value (NaN) without complaint. For stores
built before the manifest, ``layout`` (the arrays a spec's store holds) and
reading every chunk are what is left to check.

The functions here find the files at fault and return problems, one sentence
each, naming files by their path inside the store; ``qgzoo.data.store``
decides what to raise. ``CheckedArray`` turns a failed read into the problems
of the chunks it read.
"""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import Callable

import numpy as np
import zarr

from qgzoo.core import files
from qgzoo.data.reference import ReferenceSpec, coarsener_name

MANIFEST = "checksums.json"
MANIFEST_FORMAT = 1


def store_files(path: files.Location) -> dict[str, int]:
    """Size (bytes) of each file in the store's folders, by its path inside the store."""
    return {name: size for name, size in sorted(files.sizes(path).items()) if "/" in name}


def write_manifest(path: files.Location, spec_hash: str) -> None:
    """Record the size (bytes) and SHA-256 of every file in the folders of the store at ``path``.

    ``spec_hash`` stands for the root's spec attribute, which is left out with
    the root's other attributes.
    """
    # A local write killed midway leaves zarr's temporary ``*.partial`` file; nothing reads it.
    if not files.is_remote(path):
        for partial in path.glob("*/**/*.partial"):
            partial.unlink()
    listed = {name: {"bytes": size, "sha256": files.file_sha256(path / name)}
              for name, size in store_files(path).items()}
    manifest = {"format": MANIFEST_FORMAT, "spec": spec_hash, "files": listed}
    files.atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def read_manifest(path: files.Location) -> dict | None:
    """The manifest of the store at ``path``; None if it has none.

    Raises ValueError, naming the manifest, if it cannot be read or is not one.
    """
    file = path / MANIFEST
    if not file.exists():
        return None
    try:
        manifest = json.loads(file.read_bytes())
        entries = manifest["files"].values()
        if manifest["format"] != MANIFEST_FORMAT or not all(
                isinstance(e["bytes"], int) and isinstance(e["sha256"], str) for e in entries):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{MANIFEST} cannot be read as qgzoo checksums") from None
    return manifest


def file_problems(path: files.Location, root: zarr.Group,
                  spec: ReferenceSpec) -> tuple[dict | None, list[str]]:
    """The cheap check of a complete store (reads no chunk): the files of its manifest
    there with their sizes (bytes), else the arrays of its spec; (manifest, problems)."""
    try:
        manifest = read_manifest(path)
    except ValueError as error:
        return None, [str(error)]
    if manifest is None:
        # Only stores built before checksums were recorded lack the attribute.
        missing = [f"{MANIFEST} is missing"] if root.attrs.get("checksums") else []
        return None, missing or structure_problems(root, spec)
    if manifest["spec"] != files.content_hash(root.attrs["qgzoo_spec"]):
        return manifest, ["the spec in zarr.json (qgzoo_spec) is not the one its checksums "
                          "were recorded for"]
    # A missing file is named once, by the manifest, not again as a missing array.
    return manifest, size_problems(path, manifest) or structure_problems(root, spec)


def size_problems(path: files.Location, manifest: dict) -> list[str]:
    """The cheap check: files of ``manifest`` missing from the store, or of another size."""
    return _check(path, manifest, hashes=False)


def hash_problems(path: files.Location, manifest: dict) -> list[str]:
    """The full check: ``size_problems``, files whose SHA-256 differs, and files not listed."""
    present = store_files(path)
    unlisted = [f"{name} is not among the checksums (the build did not write it)"
                for name in present if name not in manifest["files"]]
    return _check(path, manifest, hashes=True, present=present) + unlisted


def _check(path, manifest, hashes, present=None):
    present = store_files(path) if present is None else present
    missing, problems = [], []
    for name, entry in manifest["files"].items():
        size = present.get(name)
        if size is None:
            missing.append(name)
            continue
        if size != entry["bytes"]:
            problems.append(f"{name} has {size} bytes instead of {entry['bytes']}")
        elif hashes and files.file_sha256(path / name) != entry["sha256"]:
            problems.append(f"{name} does not match its SHA-256 (its bytes changed after "
                            f"the build)")
    return _missing(missing, present) + problems


def _missing(names, present):
    """One problem per missing file, or per missing folder of several files with their number
    (folders are those of the files present: an object store has no empty ones)."""
    folders_present = {"/".join(name.split("/")[:i])
                       for name in present for i in range(1, name.count("/") + 1)}
    folders: dict[str, list[str]] = {}
    for name in names:
        parts = name.split("/")
        gone = next(("/".join(parts[:i]) for i in range(1, len(parts))
                     if "/".join(parts[:i]) not in folders_present), name)
        folders.setdefault(gone, []).append(name)
    return [f"{folder}/ is missing (all {len(lost)} files)" if len(lost) > 1 else
            f"{lost[0]} is missing" for folder, lost in folders.items()]


def chunk_key(array: zarr.Array, coords: tuple[int, ...]) -> str:
    """The path inside the store of the file of chunk ``coords`` of ``array``."""
    return f"{array.path}/{array.metadata.encode_chunk_key(coords)}"


def touched_chunks(array: zarr.Array, key) -> list[tuple[int, ...]]:
    """Coordinates of the chunks that reading ``array[key]`` reads (all, for fancy indexing)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (array.ndim - len(key) + 1) + key[at + 1:]
    key = key + (slice(None),) * (array.ndim - len(key))
    per_axis = []
    for k, size, chunk, n_chunks in zip(key, array.shape, array.chunks, array.cdata_shape):
        if isinstance(k, (int, np.integer)):
            per_axis.append([int(k) % size // chunk])
        elif isinstance(k, slice):
            per_axis.append(sorted({i // chunk for i in range(*k.indices(size))}))
        else:
            per_axis.append(range(n_chunks))
    return list(itertools.product(*per_axis))


def chunk_problems(path: files.Location, array: zarr.Array, chunks=None,
                   where=lambda coords: "") -> list[str]:
    """Chunks of ``array`` (all, or those at ``chunks``) that are missing, cannot be decoded,
    or hold non-finite values; ``where(coords)`` adds to a chunk's name (which run...)."""
    problems, present = [], store_files(path)
    for coords in np.ndindex(array.cdata_shape) if chunks is None else chunks:
        name = chunk_key(array, coords) + where(coords)
        if chunk_key(array, coords) not in present:
            problems.append(f"{name} is missing (it reads as {array.fill_value})")
            continue
        try:
            values = array.get_block_selection(coords)
        except Exception as error:  # what a codec raises on bad bytes is its own
            problems.append(f"{name} cannot be decoded ({_reason(error)})")
            continue
        bad = values.size - np.count_nonzero(np.isfinite(values))
        if bad:
            problems.append(f"{name} holds {bad} non-finite values of {values.size}")
    return problems


def _reason(error: Exception) -> str:
    if "checksum" in str(error).lower():
        return "its CRC-32C checksum does not match: its bytes changed after they were written"
    return f"{type(error).__name__}: {str(error)[:100]}"


def layout(spec: ReferenceSpec) -> dict[str, tuple[int, ...]]:
    """Path -> shape of every array in the store of ``spec``."""
    runs, samples, snapshots = spec.n_runs, spec.n_samples, spec.n_hires_snapshots

    def coordinates(group, nx, time_name, n_times):
        return {f"{group}/{time_name}": (n_times,), f"{group}/lev": (2,),
                f"{group}/x": (nx,), f"{group}/y": (nx,), f"{group}/run": (runs,)}

    arrays = {}
    for coarsener in spec.coarseners:
        group, n = coarsener_name(coarsener), spec.lores_nx
        arrays |= coordinates(group, n, "time", samples)
        arrays |= {f"{group}/{name}": (runs, samples, 2, n, n) for name in spec.fields}
    if snapshots:
        arrays |= coordinates("hires", spec.hires_nx, "snapshot", snapshots)
        arrays["hires/q"] = (runs, snapshots, 2, spec.hires_nx, spec.hires_nx)
    arrays |= {"hires/ke": (runs, samples, 2), "hires/cfl": (runs, samples),
               "hires/time": (samples,)}
    return arrays


def structure_problems(root: zarr.Group, spec: ReferenceSpec) -> list[str]:
    """Groups and arrays of ``layout(spec)`` missing from ``root``, unreadable, or of
    other shapes."""
    problems, gone = [], set()
    for name, shape in layout(spec).items():
        group = name.split("/")[0]
        if group in gone:
            continue
        try:
            if group not in root:
                gone.add(group)
                problems.append(f"the group {group} is missing")
                continue
            array = root.get(name)
        except Exception as error:  # unreadable metadata: zarr's error varies with the damage
            problems.append(f"the metadata of {name} cannot be read ({error})")
            continue
        if not isinstance(array, zarr.Array):
            problems.append(f"the array {name} is missing")
        elif array.shape != shape:
            problems.append(f"{name} has shape {array.shape} instead of {shape}")
    return problems


def value_problems(path: files.Location, root: zarr.Group, spec: ReferenceSpec) -> list[str]:
    """Chunks of every array that are missing, undecodable or hold non-finite values."""
    split = {run: name for name, runs in spec.split_runs().items() for run in runs}
    problems = []
    for name, shape in layout(spec).items():
        array = root[name]
        by_run = len(shape) == 5 and array.chunks[0] == 1
        problems += chunk_problems(path, array, where=lambda c, by_run=by_run: (
            f" (run {c[0]}, {split[c[0]]} split)" if by_run else ""))
    return problems


class CheckedArray:
    """A zarr array of a complete store whose failed reads raise ``fail(problems)``, the
    problems naming the chunk files at fault.

    Reads of one run's samples (``array[run, start:stop]``, what training's windows
    are) go through whole decoded chunks, the last ``CHUNK_CACHE_BYTES`` of them
    kept, so that the many small windows of a training decode each chunk once,
    not once per window. The store must not change while it is open.
    """

    def __init__(self, array: zarr.Array, path: files.Location,
                 fail: Callable[[list[str]], Exception]):
        self.array, self.path, self.fail = array, path, fail
        self.shape, self.dtype = array.shape, array.dtype
        self.chunks = ChunkCache(CHUNK_CACHE_BYTES)

    def __getitem__(self, key) -> np.ndarray:
        if self._by_chunk(key):
            return self._samples(int(key[0]), key[1])
        return self._read(key)

    def _read(self, key) -> np.ndarray:
        try:
            return np.asarray(self.array[key])
        except (IndexError, TypeError):  # a bad key, not bad bytes
            raise
        except Exception as error:
            problems = chunk_problems(self.path, self.array, touched_chunks(self.array, key))
            if not problems:
                raise
            raise self.fail(problems) from error

    def _by_chunk(self, key) -> bool:
        return (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], (int, np.integer))
                and isinstance(key[1], slice) and key[1].step in (None, 1)
                and len(self.shape) >= 2 and self.array.chunks[0] == 1
                and 0 <= key[0] < self.shape[0])

    def _samples(self, run: int, times: slice) -> np.ndarray:
        start, stop, _ = times.indices(self.shape[1])
        size = self.array.chunks[1]
        if stop <= start:
            return self._read((run, times))
        first, last = start // size, (stop - 1) // size
        blocks = [self.chunks.get((run, block), lambda block=block: self._read(
                      (run, slice(block * size, (block + 1) * size))))
                  for block in range(first, last + 1)]
        joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return joined[start - first * size:stop - first * size].copy()

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[...], dtype=dtype)


#: Decoded chunks kept per array of an open store: a 128 -> 32 store's chunk is
#: 1 MiB (64 samples of one run), a 256 -> 64 one's 4 MiB.
CHUNK_CACHE_BYTES = 256 << 20


class ChunkCache:
    """Decoded chunks, the least recently used dropped first beyond ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.nbytes = max_bytes, 0
        self._chunks: collections.OrderedDict = collections.OrderedDict()

    def get(self, key, read: Callable[[], np.ndarray]) -> np.ndarray:
        """The chunk kept under ``key``, else ``read()``, then kept."""
        if key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        chunk = read()
        self._chunks[key] = chunk
        self.nbytes += chunk.nbytes
        while self.nbytes > self.max_bytes and len(self._chunks) > 1:
            self.nbytes -= self._chunks.popitem(last=False)[1].nbytes
        return chunk
