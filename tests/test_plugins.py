"""Plugin discovery: entry points, in-process plugins, faults, and plugin selection.

The end-to-end tests install the real distribution in ``tests/plugin_dist``
(``qgzoo-testplugin``, kind ``testblock``) into the running interpreter's
environment once per session. Everything else uses fresh registries, so the
process-wide one (built-ins only, as conftest sets ``QGZOO_PLUGINS=""``) is
always restored.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import math
import pathlib
import subprocess
import sys
import types
from typing import Literal

import jax
import numpy as np
import pydantic
import pytest
from pydantic import Field

import qgzoo
from qgzoo.core import files, plugins
from qgzoo.core.spec import CoarsenerSpec, ComponentSpec, LossSpec, NetworkSpec

PLUGIN_DIST = pathlib.Path(__file__).parent / "plugin_dist"
PLUGIN_MODULE = "qgzoo_testplugin"
PLUGIN_DISTRIBUTION = "qgzoo-testplugin"

#: Kinds the built-in plugin provides (it may grow; these must stay).
BUILTIN_KINDS = {
    "coarsener": {"operator1", "operator2"},
    "network": {"cnn", "mlp", "none", "symbolic", "stochastic"},
    "loss": {"state_mse", "forcing_mse", "wasserstein", "weighted", "energy_score", "crps"},
    "stepper": {"ab3", "euler"},
}


# ----------------------------------------------------------------------------
# Fixtures


def _can_build_without_isolation() -> bool:
    """Whether the venv's own setuptools can build an editable wheel, offline."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    numbers = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return numbers >= (70, 1)  # bdist_wheel moved into setuptools in 70.1


def _install_plugin_dist():
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--editable", str(PLUGIN_DIST)]
    if _can_build_without_isolation():
        # Offline: nothing is fetched, the venv's setuptools builds it.
        command += ["--no-build-isolation", "--no-index"]
    # Otherwise pip fetches setuptools into an isolated build environment.
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode:
        pytest.skip(f"cannot install {PLUGIN_DIST} (pip exit {done.returncode}):\n"
                    f"{done.stderr[-2000:]}")


@pytest.fixture(scope="session")
def installed_plugin_dist():
    """``qgzoo-testplugin`` installed in this environment and importable in this process."""
    if plugins.distribution_version(PLUGIN_DISTRIBUTION) is None:
        _install_plugin_dist()
    importlib.invalidate_caches()
    with pytest.MonkeyPatch.context() as patch:
        # An editable install becomes importable through a .pth file, which
        # only a new interpreter reads: put its folder on the path ourselves.
        if importlib.util.find_spec(PLUGIN_MODULE) is None:
            patch.syspath_prepend(str(PLUGIN_DIST))
        yield importlib.metadata.distribution(PLUGIN_DISTRIBUTION)


@pytest.fixture(scope="session")
def testplugin_registry(installed_plugin_dist):
    return plugins.load_registry(only=["testplugin"])


@pytest.fixture
def make_current():
    """Make a registry the process-wide one; the previous one is restored afterwards."""
    previous = []

    def make(registry):
        old = plugins.use_registry(registry)
        if not previous:
            previous.append(old)
        return registry

    yield make
    if previous:
        plugins.use_registry(previous[0])


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Replace the ``qgzoo`` entry points with the given ones (other groups untouched)."""
    original = importlib.metadata.entry_points

    def install(*entry_points):
        def entry_points_(**selection):
            if selection.get("group") == "qgzoo":
                return importlib.metadata.EntryPoints(entry_points)
            return original(**selection)
        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points_)

    return install


def entry_point(name, value):
    return importlib.metadata.EntryPoint(name=name, value=value, group="qgzoo")


# ----------------------------------------------------------------------------
# Spec classes and plugins defined here


class Unbuilt:
    """``build`` for specs that these tests only register and validate, never build."""

    def build(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} is a registration test double")


class HuberSpec(Unbuilt, LossSpec):
    """A rollout loss defined by a test plugin."""

    kind: Literal["test_huber"] = "test_huber"
    delta: float = Field(1.0, gt=0, description="transition, in units of the target's std")

    def needs_rollout(self):
        return True


class LinearClosureSpec(Unbuilt, NetworkSpec):
    kind: Literal["test_linear"] = "test_linear"


class DuplicateCoarsenerSpec(Unbuilt, CoarsenerSpec):
    kind: Literal["test_dup"] = "test_dup"


class OtherDuplicateCoarsenerSpec(Unbuilt, CoarsenerSpec):
    kind: Literal["test_dup"] = "test_dup"
    width: float = 1.0


class SecondOperator1Spec(Unbuilt, CoarsenerSpec):
    kind: Literal["operator1"] = "operator1"


class UncategorisedSpec(Unbuilt, ComponentSpec):
    kind: Literal["test_uncategorised"] = "test_uncategorised"


class KindlessSpec(Unbuilt, LossSpec):
    """Forgets to give ``kind`` a Literal default."""


class BuildlessSpec(LossSpec):
    """Forgets ``build``: the spec base declares it abstract."""

    kind: Literal["test_buildless"] = "test_buildless"


def plugin_registering(*spec_classes):
    """A plugin object whose hook registers ``spec_classes`` in order."""

    class Plugin:
        @qgzoo.hookimpl
        def register_components(self, register):
            for spec_class in spec_classes:
                register(spec_class)

    return Plugin()


class LossPlugin:
    @qgzoo.hookimpl
    def register_components(self, register):
        register(HuberSpec)
        register(LinearClosureSpec)


class FailsHalfwayPlugin:
    @qgzoo.hookimpl
    def register_components(self, register):
        register(LinearClosureSpec)
        raise RuntimeError("weights server unreachable")


class WrongSignaturePlugin:
    @qgzoo.hookimpl
    def register_components(self, add):  # the hook's argument is ``register``
        add(HuberSpec)


# ----------------------------------------------------------------------------
# The installed distribution, end to end


def test_installed_plugin_is_found_through_its_entry_point(testplugin_registry):
    registration = testplugin_registry.kinds["coarsener"]["testblock"]
    assert registration.plugin == "testplugin"
    assert registration.distribution == "qgzoo-testplugin"
    assert registration.version == "0.0.1"
    assert registration.spec_class.__module__ == PLUGIN_MODULE
    assert registration.spec_class.__name__ == "TestBlockSpec"
    assert testplugin_registry.problems == []
    # The built-ins come through the same hook, from the qgzoo distribution.
    builtin = testplugin_registry.kinds["coarsener"]["operator1"]
    assert (builtin.plugin, builtin.distribution) == ("builtin", "qgzoo")


def test_plugin_kind_is_unknown_until_its_registry_is_current(testplugin_registry,
                                                              make_current):
    make_current(plugins.load_registry(only=[]))
    with pytest.raises(pydantic.ValidationError) as caught:
        qgzoo.Experiment(coarsener={"kind": "testblock", "width_factor": 3})
    [error] = caught.value.errors()
    assert error["loc"] == ("coarsener",)
    assert error["type"] == "unknown_kind"
    assert "'testblock'" in error["msg"] and "operator1, operator2" in error["msg"]

    make_current(testplugin_registry)
    exp = qgzoo.Experiment(coarsener={"kind": "testblock", "width_factor": 3})
    assert type(exp.coarsener).__name__ == "TestBlockSpec"
    assert exp.coarsener.width_factor == 3.0
    assert exp.model_dump(mode="json")["coarsener"] == {"kind": "testblock", "width_factor": 3.0}
    assert qgzoo.Experiment.model_validate(exp.model_dump(mode="json")) == exp


def test_plugin_spec_fields_are_validated_with_their_path(testplugin_registry, make_current):
    make_current(testplugin_registry)
    with pytest.raises(pydantic.ValidationError) as caught:
        qgzoo.Experiment(coarsener={"kind": "testblock", "width_factor": 0})
    [error] = caught.value.errors()
    assert error["loc"] == ("coarsener", "width_factor")
    assert error["type"] == "greater_than"


def test_plugin_kind_appears_in_the_schema(testplugin_registry, make_current):
    make_current(testplugin_registry)
    coarseners = qgzoo.schema()["$defs"]["coarsener"]
    assert set(coarseners["discriminator"]["mapping"]) >= {"operator1", "operator2", "testblock"}


def _small_models():
    reference = qgzoo.ReferenceSpec(hires_nx=64, lores_nx=16)
    return reference.hires_model(), reference.lores_model()


def test_plugin_coarsener_damps_a_sinusoid_by_its_gaussian(testplugin_registry, make_current):
    make_current(testplugin_registry)
    exp = qgzoo.Experiment(coarsener={"kind": "testblock", "width_factor": 3})
    hires, lores = _small_models()
    coarsener = exp.coarsener.build(hires, lores)
    assert isinstance(coarsener, qgzoo.SpectralCoarsener)

    # Wavenumber m = 2 along x, amplitudes 1 and -0.5 in the two layers, plus a mean.
    x_hires = np.arange(64) / 64
    wave = np.sin(2 * np.pi * 2 * x_hires)[None, :].repeat(64, axis=0)
    field = np.stack([0.1 + wave, -0.5 * wave])
    coarse = np.asarray(coarsener.coarsen(field))
    assert coarse.shape == (2, 16, 16)

    # G = exp(-k^2 (3 dx)^2 / 24), k = 2 pi m / L, dx = L / 16:
    # exp(-(2 pi * 2 * 3 / 16)^2 / 24) = exp(-0.23132) = 0.79349.
    damping = math.exp(-((2 * math.pi * 2 * 3 / 16) ** 2) / 24)
    assert damping == pytest.approx(0.79349, abs=1e-5)
    x_lores = np.arange(16) / 16
    wave_lores = np.sin(2 * np.pi * 2 * x_lores)[None, :].repeat(16, axis=0)
    np.testing.assert_allclose(coarse[0], 0.1 + damping * wave_lores, atol=1e-12)
    np.testing.assert_allclose(coarse[1], -0.5 * damping * wave_lores, atol=1e-12)


def test_plugin_coarsener_of_width_two_is_operator2(testplugin_registry, make_current):
    make_current(testplugin_registry)
    hires, lores = _small_models()
    field = np.asarray(jax.random.normal(jax.random.key(0), (2, 64, 64)))
    testblock = plugins.registry().spec_class("coarsener", "testblock")(width_factor=2.0)
    operator2 = qgzoo.Operator2(hires, lores)
    np.testing.assert_allclose(testblock.build(hires, lores).coarsen(field),
                               operator2.coarsen(field), rtol=0, atol=1e-12)


def test_environment_variable_selects_the_installed_plugin(installed_plugin_dist, monkeypatch,
                                                           make_current):
    monkeypatch.setenv(files.ENV_PLUGINS, "testplugin")
    make_current(None)
    assert "testblock" in plugins.registry().kinds["coarsener"]
    monkeypatch.setenv(files.ENV_PLUGINS, "")
    make_current(None)
    assert "testblock" not in plugins.registry().kinds["coarsener"]


# ----------------------------------------------------------------------------
# Plugins defined in Python


def test_plugin_object_is_added_to_a_fresh_registry():
    registry = plugins.Registry()
    registry.add_plugin(LossPlugin(), "losses", distribution="my-losses", version="1.2")
    assert registry.problems == []
    assert registry.spec_class("loss", "test_huber") is HuberSpec
    assert registry.spec_class("network", "test_linear") is LinearClosureSpec
    assert [(r.category, r.kind, r.plugin, r.distribution, r.version)
            for r in registry.registrations()] == [
        ("network", "test_linear", "losses", "my-losses", "1.2"),
        ("loss", "test_huber", "losses", "my-losses", "1.2"),
    ]
    # A fresh Registry has no built-ins: they come only from load_registry.
    assert registry.kinds["coarsener"] == {}


def test_register_adds_a_plugin_to_the_current_registry(make_current):
    current = make_current(plugins.load_registry(only=[]))
    assert plugins.register(LossPlugin(), "inline") is current
    registration = current.kinds["loss"]["test_huber"]
    assert (registration.plugin, registration.distribution) == ("inline", "(in-process)")

    exp = qgzoo.Experiment(loss={"kind": "test_huber", "delta": 0.5})
    assert isinstance(exp.loss, HuberSpec) and exp.loss.delta == 0.5
    assert qgzoo.Experiment.model_validate(exp.model_dump(mode="json")) == exp


# ----------------------------------------------------------------------------
# Faults


@pytest.mark.parametrize("failing_first", [True, False])
def test_plugin_failing_midway_leaves_nothing_registered(failing_first):
    registry = plugins.Registry()
    entries = [(FailsHalfwayPlugin(), "halfway"), (LossPlugin(), "losses")]
    for plugin, name in entries if failing_first else entries[::-1]:
        registry.add_plugin(plugin, name)

    [problem] = registry.problems
    assert problem.plugin == "halfway"
    assert "register_components failed" in problem.message
    assert "weights server unreachable" in problem.message
    assert not registry.manager.has_plugin("halfway")
    # test_linear came from the good plugin only; the failed one left no trace.
    assert {r.plugin for r in registry.registrations()} == {"losses"}
    assert set(registry.kinds["network"]) == {"test_linear"}
    assert registry.ambiguous == {}


@pytest.mark.parametrize("not_a_spec, reason", [
    (int, "is not a ComponentSpec subclass"),
    (HuberSpec(), "is not a ComponentSpec subclass"),  # an instance, not the class
    (UncategorisedSpec, "has no category"),
    (KindlessSpec, "must declare kind: Literal"),
    (BuildlessSpec, "does not implement build"),
])
def test_plugin_registering_a_non_spec_is_reported(not_a_spec, reason):
    registry = plugins.Registry()
    registry.add_plugin(plugin_registering(HuberSpec, not_a_spec), "bad")
    registry.add_plugin(plugin_registering(LinearClosureSpec), "good")
    [problem] = registry.problems
    assert problem.plugin == "bad"
    assert reason in problem.message
    # All or nothing: the valid HuberSpec before the bad one is not kept either.
    assert registry.kinds["loss"] == {}
    assert set(registry.kinds["network"]) == {"test_linear"}


def test_plugin_with_a_malformed_hook_is_reported():
    registry = plugins.Registry()
    registry.add_plugin(WrongSignaturePlugin(), "wrong_signature")
    registry.add_plugin(LossPlugin(), "losses")
    [problem] = registry.problems
    assert problem.plugin == "wrong_signature"
    assert "cannot register" in problem.message and "add" in problem.message
    assert set(registry.kinds["loss"]) == {"test_huber"}


def test_entry_points_that_fail_to_import_are_reported(fake_entry_points, monkeypatch, tmp_path):
    good = types.ModuleType("qgzoo_fake_good_plugin")
    good.register_components = qgzoo.hookimpl(
        lambda register: register(HuberSpec))
    monkeypatch.setitem(sys.modules, "qgzoo_fake_good_plugin", good)
    (tmp_path / "qgzoo_fake_raising_plugin.py").write_text(
        'raise ImportError("needs libfoo.so")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(
        entry_point("missing", "nonexistent_module_xyz"),
        entry_point("raising", "qgzoo_fake_raising_plugin"),
        entry_point("good", "qgzoo_fake_good_plugin"),
        entry_point("missing_attr", "qgzoo_fake_good_plugin:no_such_object"),
    )

    registry = plugins.load_registry()
    problems = {p.plugin: p.message for p in registry.problems}
    assert set(problems) == {"missing", "raising", "missing_attr"}
    assert problems["missing"].startswith("cannot import nonexistent_module_xyz")
    assert "ModuleNotFoundError" in problems["missing"]
    assert "needs libfoo.so" in problems["raising"]
    assert "no_such_object" in problems["missing_attr"]
    # The good plugin and the built-ins still loaded.
    registration = registry.kinds["loss"]["test_huber"]
    assert (registration.plugin, registration.distribution) == ("good", "?")
    assert BUILTIN_KINDS["loss"] <= set(registry.kinds["loss"])


def test_same_kind_from_two_plugins_is_an_error_naming_both(make_current):
    registry = plugins.load_registry(only=[])
    registry.add_plugin(plugin_registering(DuplicateCoarsenerSpec, HuberSpec), "alpha",
                        "qgzoo-alpha", "1.0")
    registry.add_plugin(plugin_registering(OtherDuplicateCoarsenerSpec), "beta",
                        "qgzoo-beta", "2.0")
    both = ("plugin 'alpha' (qgzoo-alpha 1.0)", "plugin 'beta' (qgzoo-beta 2.0)")

    [problem] = registry.problems
    assert all(origin in problem.message for origin in both)
    assert "test_dup" not in registry.kinds["coarsener"]
    with pytest.raises(plugins.UnknownKindError) as caught:
        registry.spec_class("coarsener", "test_dup")
    assert all(origin in str(caught.value) for origin in both)

    make_current(registry)
    with pytest.raises(pydantic.ValidationError) as caught:
        qgzoo.Experiment(coarsener={"kind": "test_dup"})
    [error] = caught.value.errors()
    assert error["loc"] == ("coarsener",)
    assert all(origin in error["msg"] for origin in both)
    # alpha's other kind is unaffected.
    assert isinstance(qgzoo.Experiment(loss={"kind": "test_huber"}).loss, HuberSpec)


def test_plugin_redefining_a_builtin_kind_makes_it_ambiguous():
    registry = plugins.load_registry(only=[])
    registry.add_plugin(plugin_registering(SecondOperator1Spec), "shadow", "qgzoo-shadow", "0.1")
    with pytest.raises(plugins.UnknownKindError, match="plugin 'builtin' \\(qgzoo .*\\) and "
                       "plugin 'shadow' \\(qgzoo-shadow 0.1\\)"):
        registry.spec_class("coarsener", "operator1")
    assert registry.spec_class("coarsener", "operator2").__name__ == "Operator2Spec"


def test_same_entry_point_name_from_two_distributions_is_reported():
    registry = plugins.Registry()
    registry.add_plugin(plugin_registering(HuberSpec), "same", "dist-one", "1.0")
    registry.add_plugin(plugin_registering(LinearClosureSpec), "same", "dist-two", "2.0")
    [problem] = registry.problems
    assert problem.plugin == "same"
    assert "dist-one 1.0" in problem.message and "dist-two" in problem.message
    assert set(registry.kinds["loss"]) == {"test_huber"}
    assert registry.kinds["network"] == {}


# ----------------------------------------------------------------------------
# Selecting plugins


@pytest.fixture
def two_fake_plugins(fake_entry_points, monkeypatch):
    good = types.ModuleType("qgzoo_fake_selected_plugin")
    good.register_components = qgzoo.hookimpl(lambda register: register(HuberSpec))
    monkeypatch.setitem(sys.modules, "qgzoo_fake_selected_plugin", good)
    fake_entry_points(entry_point("good", "qgzoo_fake_selected_plugin"),
                      entry_point("broken", "nonexistent_module_xyz"))


@pytest.mark.parametrize("only, loaded, tried_broken", [
    (None, {"builtin", "good"}, True),
    (["good"], {"builtin", "good"}, False),
    (["broken"], {"builtin"}, True),
    ([], {"builtin"}, False),
])
def test_only_loads_the_named_entry_points(two_fake_plugins, only, loaded, tried_broken):
    registry = plugins.load_registry(only=only)
    assert {r.plugin for r in registry.registrations()} == loaded
    assert [p.plugin for p in registry.problems] == (["broken"] if tried_broken else [])


def test_builtins_are_a_plugin_loaded_whatever_is_selected(two_fake_plugins):
    registry = plugins.load_registry(only=[])
    for category, kinds in BUILTIN_KINDS.items():
        assert kinds <= set(registry.kinds[category])
    assert {(r.plugin, r.distribution) for r in registry.registrations()} == {
        ("builtin", "qgzoo")}


@pytest.mark.parametrize("value, loaded", [
    (None, {"builtin", "good"}),  # unset: every installed plugin
    ("", {"builtin"}),
    (" good , other ", {"builtin", "good"}),
    ("broken", {"builtin"}),
])
def test_environment_variable_selects_plugins(two_fake_plugins, monkeypatch, make_current,
                                              value, loaded):
    if value is None:
        monkeypatch.delenv(files.ENV_PLUGINS, raising=False)
    else:
        monkeypatch.setenv(files.ENV_PLUGINS, value)
    make_current(None)
    assert {r.plugin for r in plugins.registry().registrations()} == loaded


def test_the_suite_runs_with_builtins_only(make_current):
    make_current(None)  # reload as a fresh process would, from the environment
    assert {r.plugin for r in plugins.registry().registrations()} == {"builtin"}


def test_a_plugin_that_exits_at_import_is_a_problem_and_the_rest_load(fake_entry_points,
                                                                      monkeypatch, tmp_path):
    (tmp_path / "qgzoo_fake_exiting_plugin.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    good = types.ModuleType("qgzoo_fake_good_plugin")
    good.register_components = qgzoo.hookimpl(lambda register: register(HuberSpec))
    monkeypatch.setitem(sys.modules, "qgzoo_fake_good_plugin", good)
    fake_entry_points(entry_point("exiting", "qgzoo_fake_exiting_plugin"),
                      entry_point("good", "qgzoo_fake_good_plugin"))
    registry = plugins.load_registry()
    problem, = registry.problems
    assert problem.plugin == "exiting" and "SystemExit(3)" in problem.message
    assert "test_huber" in registry.kinds["loss"]


def test_selecting_a_plugin_that_is_not_installed_is_a_problem(two_fake_plugins):
    registry = plugins.load_registry(only=["good", "doesnotexist"])
    problem, = registry.problems
    assert problem.plugin == "doesnotexist"
    assert problem.message == ("QGZOO_PLUGINS names 'doesnotexist', but no installed plugin "
                               "has that entry-point name; installed: broken, good")
    assert {r.plugin for r in registry.registrations()} == {"builtin", "good"}
