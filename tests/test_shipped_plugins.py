"""The plugin distributions under plugins/ are installed and discovered like any user's."""

import importlib.metadata
import pathlib
import tomllib

import pytest
from pydantic import ValidationError

import qgzoo
from qgzoo.app import cli
from qgzoo.core import plugins

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = sorted(ROOT.glob("plugins/*/pyproject.toml"))


def project(path):
    data = tomllib.loads(path.read_text())["project"]
    (entry_point,) = data["entry-points"]["qgzoo"]
    return data["name"], data["version"], entry_point


@pytest.fixture
def all_plugins():
    previous = plugins.use_registry(plugins.load_registry())
    yield plugins.registry()
    plugins.use_registry(previous)


def test_every_shipped_plugin_is_installed_and_listed(all_plugins, capsys):
    assert len(SHIPPED) >= 3
    by_distribution = {}
    for reg in all_plugins.registrations():
        by_distribution.setdefault(reg.distribution, set()).add((reg.plugin, reg.version))
    assert cli.main(["plugins"]) == 0
    listing = capsys.readouterr().out
    for path in SHIPPED:
        name, version, entry_point = project(path)
        assert importlib.metadata.version(name) == version, f"{name} is not installed"
        assert by_distribution.get(name) == {(entry_point, version)}, name
        assert name in listing and version in listing
    assert not all_plugins.problems


def test_an_uninstalled_plugin_leaves_the_others_working(monkeypatch):
    """Hide qgzoo-filters' entry point, as uninstalling it would."""
    real = importlib.metadata.entry_points

    def without_filters(**selection):
        found = real(**selection)
        if selection.get("group") != "qgzoo":
            return found
        return importlib.metadata.EntryPoints(
            ep for ep in found if not (ep.dist and ep.dist.name == "qgzoo-filters"))

    monkeypatch.setattr(importlib.metadata, "entry_points", without_filters)
    registry = plugins.load_registry()
    assert "operator3" not in registry.kinds["coarsener"]
    assert {"operator1", "operator2"} <= set(registry.kinds["coarsener"])
    assert "backscatter_biharmonic" in registry.kinds["network"]
    assert "spectral" in registry.kinds["loss"] and not registry.problems

    previous = plugins.use_registry(registry)
    try:
        qgzoo.Experiment(network={"kind": "backscatter_biharmonic"})  # still builds
        with pytest.raises(ValidationError) as error:
            qgzoo.Experiment(coarsener={"kind": "operator3"})
    finally:
        plugins.use_registry(previous)
    (item,) = error.value.errors()
    assert item["loc"] == ("coarsener",)
    assert "unknown coarsener kind 'operator3'" in item["msg"]
    assert "operator1, operator2" in item["msg"] and "may not be installed" in item["msg"]
