"""Files and places: the one atomic write, the one content hash, where the cache and the
zoo live, and every environment variable qgzoo reads.

Environment variables:

- ``QGZOO_CACHE``: the cache of reference stores, benchmarks and runs
  (default ``~/.cache/qgzoo``);
- ``QGZOO_REGISTRY``: the zoo's folder (default: the ``registry/`` shipped in
  the installed package, or that of the source checkout);
- ``QGZOO_PLUGINS``: comma-separated entry-point names of the only plugins to
  load (empty: the built-in components alone).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Callable

ENV_CACHE = "QGZOO_CACHE"
ENV_REGISTRY = "QGZOO_REGISTRY"
ENV_PLUGINS = "QGZOO_PLUGINS"

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]


def atomic_write(path: str | pathlib.Path, write: Callable[[pathlib.Path], object]) -> pathlib.Path:
    """Write ``path`` all at once: ``write(tmp)`` fills a file beside it, then it replaces ``path``.

    The temporary name keeps the suffix (``x.npz`` -> ``x.npz.tmp.npz``), as
    ``np.savez`` wants one. A reader sees the old file or the new one, never a part.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f"{path.name}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """``atomic_write`` of a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def content_hash(*parts) -> str:
    """A short (16 hex digits) SHA-256 of bytes and JSON-able parts, in order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cache_dir() -> pathlib.Path:
    """The cache folder: ``$QGZOO_CACHE``, else ``~/.cache/qgzoo``."""
    return pathlib.Path(os.environ.get(ENV_CACHE, pathlib.Path.home() / ".cache" / "qgzoo"))


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
