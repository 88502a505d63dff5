"""Plugin discovery: the registry of component kinds.

Plugins are found through the ``qgzoo`` entry-point group. Loading is fault
tolerant: a plugin that fails to import or to register is reported in
``Registry.problems`` and the others still load; the same kind registered by
two plugins is ambiguous, and using it is an error that names both.

The built-in components are a plugin too, ``qgzoo.components``, loaded by its
dotted name through the same hook (as llm loads its default plugins). Set
``QGZOO_PLUGINS`` to a comma-separated list of entry-point names to load only
those (an empty value loads only the built-in components).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect

import pluggy

from qgzoo.core import files, hookspecs
from qgzoo.core.spec import CATEGORIES, ComponentSpec

#: The built-in plugins, imported by dotted name.
DEFAULT_PLUGINS = {"builtin": "qgzoo.components"}


class UnknownKindError(KeyError):
    """A spec names a kind that no loaded plugin provides."""

    def __str__(self):
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Registration:
    """One component kind and where it comes from."""

    category: str
    kind: str
    spec_class: type
    plugin: str
    distribution: str
    version: str


@dataclasses.dataclass(frozen=True)
class Problem:
    """A plugin that could not be loaded, or a kind registered twice."""

    plugin: str
    message: str


class Registry:
    """The component kinds of all loaded plugins, by category."""

    def __init__(self):
        self.manager = pluggy.PluginManager("qgzoo")
        self.manager.add_hookspecs(hookspecs)
        self.kinds: dict[str, dict[str, Registration]] = {c: {} for c in CATEGORIES}
        self.ambiguous: dict[tuple[str, str], list[Registration]] = {}
        self.problems: list[Problem] = []
        self._distributions: dict[str, tuple[str, str]] = {}

    def add_plugin(self, plugin, name: str, distribution: str = "", version: str = ""):
        """Register ``plugin`` and its components; report it if that fails."""
        if self.manager.has_plugin(name):
            other = self._plugin_distribution(name)
            self.problems.append(
                Problem(name, f"entry point name {name!r} is used by both "
                        f"{other} and {distribution or '?'}; only the first loaded")
            )
            return
        try:
            self.manager.register(plugin, name=name)
        except (Exception, SystemExit) as error:  # a plugin's bad hook must not stop the others
            self.problems.append(Problem(name, f"cannot register: {error!r}"))
            return
        self._distributions[name] = (distribution, version)
        for impl in self.manager.hook.register_components.get_hookimpls():
            if impl.plugin_name == name:
                self._collect(impl, name, distribution, version)

    def _plugin_distribution(self, name):
        dist, version = self._distributions.get(name, ("?", ""))
        return f"{dist} {version}".strip()

    def _collect(self, impl, name, distribution, version):
        # Registrations are committed only if the whole hook succeeds, so a
        # plugin that fails midway leaves nothing half-registered.
        pending: list[type] = []
        try:
            impl.function(register=pending.append)
            registrations = [self._registration(cls, name, distribution, version)
                             for cls in pending]
        except Exception as error:
            self.manager.unregister(name=name)
            self.problems.append(Problem(name, f"register_components failed: {error!r}"))
            return
        for reg in registrations:
            self._add(reg)

    @staticmethod
    def _registration(cls, plugin, distribution, version) -> Registration:
        if not (isinstance(cls, type) and issubclass(cls, ComponentSpec)):
            raise TypeError(f"{cls!r} is not a ComponentSpec subclass")
        category = getattr(cls, "category", None)
        if category not in CATEGORIES:
            raise TypeError(f"{cls.__name__} has no category among {CATEGORIES}")
        kind = cls.model_fields["kind"].default
        if not isinstance(kind, str):
            raise TypeError(f"{cls.__name__} must declare kind: Literal['name'] = 'name'")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise TypeError(f"{cls.__name__} does not implement {missing}")
        return Registration(category, kind, cls, plugin, distribution, version)

    def _add(self, reg: Registration):
        key = (reg.category, reg.kind)
        if key in self.ambiguous:
            self.ambiguous[key].append(reg)
            return
        existing = self.kinds[reg.category].pop(reg.kind, None)
        if existing is None:
            self.kinds[reg.category][reg.kind] = reg
            return
        self.ambiguous[key] = [existing, reg]
        self.problems.append(Problem(
            reg.plugin,
            f"{reg.category} kind {reg.kind!r} is registered by both "
            f"{_origin(existing)} and {_origin(reg)}",
        ))

    def spec_class(self, category: str, kind: str) -> type[ComponentSpec]:
        """The spec class of ``kind``; a clear error if it is missing or ambiguous."""
        if (category, kind) in self.ambiguous:
            origins = " and ".join(_origin(r) for r in self.ambiguous[category, kind])
            raise UnknownKindError(
                f"{category} kind {kind!r} is registered by both {origins}; "
                "uninstall one of them")
        try:
            return self.kinds[category][kind].spec_class
        except KeyError:
            installed = ", ".join(sorted(self.kinds[category])) or "none"
            raise UnknownKindError(
                f"unknown {category} kind {kind!r}; installed kinds: {installed}. "
                "The plugin that provides it may not be installed "
                "(see `qgzoo plugins`).") from None

    def registrations(self) -> list[Registration]:
        """Every registered kind, sorted by category then kind."""
        return [self.kinds[c][k] for c in CATEGORIES for k in sorted(self.kinds[c])]


def _origin(reg: Registration) -> str:
    return f"plugin {reg.plugin!r} ({reg.distribution} {reg.version})"


def load_registry(only: list[str] | None = None) -> Registry:
    """Build a registry: the built-in components, then entry-point plugins.

    ``only`` names the entry points to load (``None``: all; ``[]``: none).
    """
    registry = Registry()
    for name, module in DEFAULT_PLUGINS.items():
        registry.add_plugin(importlib.import_module(module), name, "qgzoo",
                            distribution_version("qgzoo") or "dev")
    entry_points = importlib.metadata.entry_points(group="qgzoo")
    for name in sorted(set(only or ()) - set(entry_points.names)):
        registry.problems.append(Problem(name, (
            f"{files.ENV_PLUGINS} names {name!r}, but no installed plugin has that entry-point "
            f"name; installed: {', '.join(sorted(entry_points.names)) or 'none'}")))
    for ep in entry_points:
        if only is not None and ep.name not in only:
            continue
        dist = ep.dist.name if ep.dist else "?"
        dist_version = ep.dist.version if ep.dist else "?"
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as error:  # sys.exit at import must not stop qgzoo
            registry.problems.append(Problem(ep.name, f"cannot import {ep.value}: {error!r}"))
            continue
        registry.add_plugin(plugin, ep.name, dist, dist_version)
    return registry


def distribution_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None if it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


_current: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, loaded on first use (honours QGZOO_PLUGINS)."""
    global _current
    if _current is None:
        _current = load_registry(files.selected_plugins())
    return _current


def use_registry(new: Registry | None) -> Registry | None:
    """Replace the process-wide registry (``None`` reloads on next use); returns the old one."""
    global _current
    old, _current = _current, new
    return old


def register(plugin, name: str) -> Registry:
    """Register a plugin object defined in Python (no entry point) in the current registry."""
    reg = registry()
    reg.add_plugin(plugin, name, distribution="(in-process)", version="")
    return reg
