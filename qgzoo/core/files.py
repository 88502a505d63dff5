"""Files and places: local folders and object stores, the one atomic write, checksums,
saved pytrees, locks, reading text files, disposable caches, the one content hash, where
the cache, the stores and the zoo live, and every environment variable qgzoo reads.

``location`` makes a ``pathlib.Path`` of a local path (or ``file://`` URL)
and a ``UPath`` (universal-pathlib, on fsspec) of any other URL: ``s3://``,
``gs://``, ``memory://``... Reference stores may live at such a URL; the
functions here write to both. On an object store a write of one object is
already all or nothing, so it is written in place, and there are no locks:
``locked`` guards folders on this machine's disks only.

A file written by ``checked_write`` has its SHA-256 beside it (``NAME.sha256``)
and ``verified`` refuses bytes that do not match. The checksum file is written
before the file it describes and keeps the previous checksum too, so a process
killed between the two writes leaves a pair that still verifies.

Environment variables:

- ``QGZOO_CACHE``: the cache of reference stores, benchmarks and runs
  (default ``~/.cache/qgzoo``);
- ``QGZOO_STORES``: where reference stores are built and read, a folder or
  an fsspec URL (default: the cache); credentials and endpoints come from
  the filesystem's own settings (for S3, ``AWS_ENDPOINT_URL`` and the other
  ``AWS_*`` variables);
- ``QGZOO_REGISTRY``: the zoo's folder (default: the ``registry/`` shipped in
  the installed package, or that of the source checkout);
- ``QGZOO_PLUGINS``: comma-separated entry-point names of the only plugins to
  load (empty: the built-in components alone).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np

from qgzoo.core.errors import UserError

ENV_CACHE = "QGZOO_CACHE"
ENV_STORES = "QGZOO_STORES"
ENV_REGISTRY = "QGZOO_REGISTRY"
ENV_PLUGINS = "QGZOO_PLUGINS"

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]
T = TypeVar("T")


#: A local path, or a path on an fsspec filesystem (``upath.UPath``).
Location = Any


def location(path: str | os.PathLike) -> Location:
    """``path`` as a ``pathlib.Path`` if it is local (a path or a ``file://`` URL), else as
    a ``UPath`` on its fsspec filesystem."""
    if isinstance(path, pathlib.Path) or hasattr(path, "fs"):  # already a location
        return path
    text = os.fspath(path)
    if text.startswith("file://"):
        return pathlib.Path(text.removeprefix("file://"))
    if "://" not in text:
        return pathlib.Path(text)
    import upath  # here, not at the top: fsspec is imported only by a URL
    try:
        return upath.UPath(text)
    except (ValueError, ImportError) as error:
        raise UserError(f"{text}: {error}; a URL needs the fsspec filesystem of its protocol "
                        f"(s3fs for s3://, gcsfs for gs://)") from None


def is_remote(path: Location) -> bool:
    """Whether ``path`` (from ``location``) is on an fsspec filesystem, not a local disk."""
    return not isinstance(path, pathlib.Path)


def atomic_write(path: str | pathlib.Path, write: Callable[[pathlib.Path], object]) -> pathlib.Path:
    """Write ``path`` all at once: ``write(tmp)`` fills a file beside it, then it replaces ``path``.

    The temporary name holds the process id, so that two writers never share
    one, and keeps the suffix (``x.npz`` -> ``x.npz.123.tmp.npz``), as
    ``np.savez`` wants one. A reader sees the old file or the new one, never a part.
    On an object store ``write(path)`` writes in place: an object is replaced whole.
    """
    path = location(path)
    if is_remote(path):
        write(path)
        return path
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """``atomic_write`` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def file_sha256(path: str | pathlib.Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with location(path).open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def sizes(folder: Location) -> dict[str, int]:
    """Size (bytes) of every file under ``folder``, by its path inside it ("a/b/c"): one
    listing, also on an object store."""
    folder = location(folder)
    if not is_remote(folder):
        return {file.relative_to(folder).as_posix(): file.stat().st_size
                for file in folder.rglob("*") if file.is_file()}
    folder.fs.invalidate_cache()  # another filesystem instance (zarr's) may have written
    root = folder.path.rstrip("/") + "/"
    found = folder.fs.find(folder.path, detail=True) if folder.exists() else {}
    return {name.removeprefix(root): info["size"] for name, info in found.items()
            if info.get("type") == "file" and name.startswith(root)}


def checksum_path(path: str | pathlib.Path) -> pathlib.Path:
    """Where the checksum of ``path`` is kept: ``NAME.sha256`` beside it."""
    path = location(path)
    return path.with_name(path.name + ".sha256")


def checked_write(path: str | pathlib.Path,
                  write: Callable[[pathlib.Path], object]) -> pathlib.Path:
    """``atomic_write`` that records the new bytes' SHA-256 in ``checksum_path(path)``,
    with that of the bytes they replace, before replacing them."""
    path = location(path)

    def write_and_record(tmp: pathlib.Path) -> None:
        write(tmp)
        sums = [file_sha256(tmp)] + ([file_sha256(path)] if path.is_file() else [])
        atomic_write_text(checksum_path(path), "\n".join(sums) + "\n")

    return atomic_write(path, write_and_record)


def write_tree(path: str | pathlib.Path, tree) -> pathlib.Path:
    """Save the leaves of the pytree ``tree`` (equinox's format) with ``checked_write``."""
    def write(tmp):
        with tmp.open("wb") as handle:
            eqx.tree_serialise_leaves(handle, tree)

    return checked_write(path, write)


def read_tree(path: str | pathlib.Path, like):
    """The pytree saved at ``path`` by ``write_tree``, shaped as ``like``.

    Bytes that do not match their checksum, a file that is truncated or was
    written for another tree, and non-finite numbers are each a ``UserError``
    naming the file.
    """
    path = verified(path)
    try:
        with path.open("rb") as handle:
            tree = eqx.tree_deserialise_leaves(handle, like)
    except Exception as error:  # numpy and equinox raise several types for bad bytes
        raise UserError(f"{path} is truncated or does not hold what it should here "
                        f"({type(error).__name__}); delete it and write it again") from None
    arrays = [np.asarray(leaf) for leaf in jax.tree.leaves(tree) if eqx.is_array(leaf)]
    if not all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.inexact)):
        raise UserError(f"{path} holds non-finite numbers (inf or NaN); delete it and "
                        f"write it again")
    return tree


def verified(path: str | pathlib.Path) -> pathlib.Path:
    """``path``, after checking its bytes against the checksum beside it (if there is one).

    A missing file or a mismatch is a ``UserError`` naming the file.
    """
    path = location(path)
    if not path.is_file():
        raise UserError(f"{path} is missing")
    sums = checksum_path(path)
    if sums.exists() and file_sha256(path) not in sums.read_text().split():
        raise UserError(f"{path} does not match its checksum in {sums.name}: the file was "
                        f"changed or damaged after qgzoo wrote it; delete it and write it again")
    return path


def remove(path: str | pathlib.Path) -> None:
    """Delete ``path`` and its checksum file, if they exist."""
    for file in (location(path), checksum_path(path)):
        if file.exists():
            file.unlink()


def read_text(path: str | pathlib.Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a missing, unreadable or non-UTF-8 file is a ``UserError``."""
    path = location(path)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: the {what} is not UTF-8 text (byte {error.start}); save it "
                        f"as UTF-8") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a {what}") from None
    except OSError as error:
        raise UserError(f"cannot read the {what} {path}: {error.strerror}") from None


def read_json(path: str | pathlib.Path, what: str = "JSON file"):
    """The parsed JSON of ``path``; unreadable or invalid JSON is a ``UserError`` with the line."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: the {what} is not valid JSON: {error.msg} at line "
                        f"{error.lineno}, column {error.colno}") from None


def lock_path(path: str | pathlib.Path) -> pathlib.Path:
    """The lock file of a file or folder ``path``: ``.NAME.lock`` beside it (``path``
    resolved, so that ``.`` and a link to a folder lock that folder)."""
    path = pathlib.Path(path).resolve()
    if not path.name:
        raise UserError(f"{path} cannot be used: choose a folder inside it")
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: str | pathlib.Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the lock of ``path`` (a trained folder, a store, a comparison's folder).

    Locks are advisory ``flock`` locks on ``lock_path(path)``, released by the
    system when the holder exits, however it exits. If another process holds
    it: a ``UserError`` naming that process, or with ``wait``, a note on
    stderr and a wait for it. A folder on an object store is not locked.
    """
    if is_remote(location(path)):
        yield
        return
    lock = lock_path(path)
    blocker = next((p for p in lock.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot use {path}: {blocker} is a file, not a folder")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if not wait:
                handle.close()
                raise UserError(f"{path} is in use by another qgzoo process ({holder}); wait "
                                f"for it to finish or use another folder") from None
            print(f"qgzoo: waiting for {holder}, which is using {path}", file=sys.stderr,
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        # The holder before us may have deleted the file it locked: lock the one now there.
        if lock.exists() and os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        lock.unlink(missing_ok=True)
        handle.close()


def read_cache(path: pathlib.Path, load: Callable[[pathlib.Path], T]) -> T | None:
    """``load(path)`` of a cache file, or None if there is none.

    Caches are disposable: a file that fails to load (truncated, damaged, from
    another version) is deleted and reported on stderr, and the caller
    computes it again.
    """
    if not path.exists():
        return None
    try:
        return load(path)
    except Exception as error:  # whatever the damage, the cure is to recompute
        path.unlink(missing_ok=True)
        print(f"qgzoo: the cached {path} could not be read ({type(error).__name__}: {error}); "
              f"deleted, computing it again", file=sys.stderr, flush=True)
        return None


def content_hash(*parts) -> str:
    """A short (16 hex digits) SHA-256 of bytes and JSON-able parts, in order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cache_dir() -> pathlib.Path:
    """The cache folder: ``$QGZOO_CACHE``, else ``~/.cache/qgzoo``."""
    return pathlib.Path(os.environ.get(ENV_CACHE, pathlib.Path.home() / ".cache" / "qgzoo"))


def stores_dir() -> Location:
    """Where reference stores are built and read: ``$QGZOO_STORES`` (a folder or an fsspec
    URL), else ``cache_dir()``."""
    return location(os.environ[ENV_STORES]) if os.environ.get(ENV_STORES) else cache_dir()


def registry_dir() -> pathlib.Path:
    """The zoo's folder: ``$QGZOO_REGISTRY``, else the installed package's ``registry``
    (a wheel carries the repository's ``registry/`` there), else the checkout's."""
    if ENV_REGISTRY in os.environ:
        return pathlib.Path(os.environ[ENV_REGISTRY])
    installed = _PACKAGE / "registry"
    return installed if installed.is_dir() else _PACKAGE.parent / "registry"


def selected_plugins() -> list[str] | None:
    """The entry-point names ``$QGZOO_PLUGINS`` allows (None: unset, load all)."""
    names = os.environ.get(ENV_PLUGINS)
    return None if names is None else [n.strip() for n in names.split(",") if n.strip()]
