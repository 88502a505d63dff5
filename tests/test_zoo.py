"""The zoo: listing a registry, errors, a trained entry as a pyqg-jax param_func, the shipped registry."""

import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyqg_jax.parameterizations import ParameterizedModel
from pyqg_jax.steppers import AB3Stepper, SteppedModel

import qgzoo
from qgzoo import zoo
from qgzoo.app import cli
from qgzoo.core import files
from qgzoo.evaluation import comparison as comparing
from qgzoo.evaluation.comparison import entry_from_folder
from qgzoo.data.reference import REFERENCES, SMALL_REFERENCE
from qgzoo.core.schema import validate_component
from qgzoo.evaluation.benchmark import Benchmark, shipped_path
from qgzoo.evaluation.protocols import PROTOCOLS
from qgzoo.training.experiment import TrainingSpec

SHIPPED = pathlib.Path(__file__).resolve().parents[1] / "registry"
DT = 3600.0


@pytest.fixture
def registry(tmp_path, monkeypatch):
    root = tmp_path / "registry"
    root.mkdir()
    monkeypatch.setenv("QGZOO_REGISTRY", str(root))
    return root


def write_entry(root, name, network=None):
    folder = root / name
    folder.mkdir()
    experiment = qgzoo.Experiment(network=network or {"kind": "none"}, training={"steps": 0})
    (folder / "experiment.json").write_text(experiment.to_json())
    return folder


# --- a registry folder --------------------------------------------------------------------

def test_an_entry_is_scored_on_its_own_configuration_first_then_on_the_others(registry):
    for config in ("eddy", "jet"):
        folder = registry / f"{config}-entry"
        folder.mkdir()
        experiment = qgzoo.Experiment(
            reference={**REFERENCES[f"{config}-256-64"], "config": config},
            network={"kind": "none"}, training={"steps": 0})
        (folder / "experiment.json").write_text(experiment.to_json())
    assert zoo.benchmarks("eddy-entry") == ("eddy-256-64", "jet-256-64")
    assert zoo.benchmarks("jet-entry") == ("jet-256-64", "eddy-256-64")


def test_names_are_the_folders_with_an_experiment(registry):
    assert files.registry_dir() == registry
    write_entry(registry, "b-entry")
    write_entry(registry, "a-entry")
    (registry / "references").mkdir()
    (registry / "references" / "eddy-64-16.npz").write_bytes(b"")
    (registry / "no-spec").mkdir()
    (registry / "no-spec" / "card.md").write_text("# no spec\n")
    (registry / "stray.txt").write_text("not an entry\n")
    (registry / "spec-is-a-folder").mkdir()
    (registry / "spec-is-a-folder" / "experiment.json").mkdir()
    assert zoo.names() == ["a-entry", "b-entry"]
    assert zoo.folder("a-entry") == registry / "a-entry"


def test_an_absent_registry_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("QGZOO_REGISTRY", str(tmp_path / "nowhere"))
    assert zoo.names() == []
    with pytest.raises(qgzoo.UserError, match="entries: none"):
        zoo.folder("x")


def test_an_unknown_entry_is_an_error_listing_the_entries(registry):
    write_entry(registry, "a-entry")
    write_entry(registry, "b-entry")
    for name in ("x", "references", "stray.txt"):
        with pytest.raises(qgzoo.UserError,
                           match=f"no zoo entry '{name}'; entries: a-entry, b-entry"):
            zoo.folder(name)
        with pytest.raises(qgzoo.UserError):
            zoo.load(name)


def test_card_without_card_md_says_how_to_build_it_and_shows_the_spec(registry):
    folder = write_entry(registry, "plain")
    text = zoo.card("plain")
    assert "qgzoo zoo build plain" in text
    assert json.loads(text.split("```json\n")[1].split("```")[0]) == json.loads(
        (folder / "experiment.json").read_text())
    (folder / "card.md").write_text("# plain\n\nscores\n")
    assert zoo.card("plain") == "# plain\n\nscores\n"


def test_an_untrained_entry_is_its_constant_closure(registry):
    write_entry(registry, "plain")
    assert not zoo.trains("plain")
    assert isinstance(zoo.load("plain"), qgzoo.NoClosure)


# --- a trained entry -----------------------------------------------------------------------

TINY = qgzoo.Experiment(
    reference=SMALL_REFERENCE, network={"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]},
    loss={"kind": "forcing_mse"}, stepper={"kind": "ab3", "dt": DT},
    training={"steps": 3, "batch_size": 2, "rollout_steps": 0})


@pytest.fixture(scope="module")
def trained_registry(small_data, tmp_path_factory):
    """A registry holding ``tiny``: three offline updates of a tiny CNN."""
    root = tmp_path_factory.mktemp("registry")
    trained = qgzoo.train(TINY, root / "tiny", data=small_data, progress=False)
    return root, trained


@pytest.fixture
def tiny(trained_registry, monkeypatch):
    root, trained = trained_registry
    monkeypatch.setenv("QGZOO_REGISTRY", str(root))
    return trained


def test_a_trained_entry_loads_with_its_weights_spec_and_log(tiny):
    assert zoo.names() == ["tiny"] and zoo.trains("tiny")
    assert zoo.experiment("tiny") == TINY
    loaded = zoo.load("tiny")
    ours = jax.tree.leaves(eqx.filter(tiny.parameterization, eqx.is_array))
    theirs = jax.tree.leaves(eqx.filter(loaded, eqx.is_array))
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    entry = entry_from_folder(zoo.folder("tiny"), "tiny")
    assert entry.history == tuple(tiny.history) and [h["step"] for h in entry.history] == [0, 1, 2]
    assert entry.stepper == {"kind": "ab3", "dt": DT}
    assert "qgzoo zoo build tiny" in zoo.card("tiny")


def _state(model, q):
    return model.create_initial_state(jax.random.key(0)).update(q=jnp.asarray(q))


def test_a_trained_entry_is_a_pyqg_jax_param_func(tiny, small_data):
    lores = zoo.experiment("tiny").reference.lores_model()
    loaded = zoo.load("tiny")
    q = np.asarray(small_data.fields["q"][3, 0])  # a held-out state
    full = jax.jit(lores.get_full_state)(_state(lores, q))
    forcing = np.asarray(eqx.filter_jit(loaded.q_forcing)(full, lores))
    np.testing.assert_array_equal(forcing,
                                  eqx.filter_jit(tiny.parameterization.q_forcing)(full, lores))
    assert np.isfinite(forcing).all() and np.abs(forcing).max() > 0

    model = ParameterizedModel(lores, param_func=loaded)
    state = model.initialize_param_state(_state(lores, q))
    # Its updates are the model's tendency plus the forcing, in spectral space.
    updates = jax.jit(model.get_updates)(state).model_state.qh
    plain = jax.jit(lores.get_updates)(_state(lores, q)).qh
    forcing_h = np.fft.rfft2(forcing)
    np.testing.assert_allclose(updates - plain, forcing_h, rtol=0,
                               atol=1e-10 * np.abs(forcing_h).max())
    # It steps: the first AB3 step is forward Euler, filtered, so the forcing
    # adds filtr * dt * S to the new state.
    stepped, reference = (SteppedModel(m, AB3Stepper(dt=DT)) for m in (model, lores))
    step, step_reference = jax.jit(stepped.step_model), jax.jit(reference.step_model)
    new = step(stepped.initialize_stepper_state(state))
    without = step_reference(reference.initialize_stepper_state(_state(lores, q)))
    difference = np.asarray(new.state.model_state.qh) - np.asarray(without.state.qh)
    expected = np.asarray(lores.filtr) * DT * forcing_h
    np.testing.assert_allclose(difference, expected, rtol=0,
                               atol=1e-8 * np.abs(expected).max())
    for _ in range(5):
        new = step(new)
    assert np.isfinite(np.asarray(new.state.model_state.q)).all()


# --- the shipped registry -------------------------------------------------------------------

def shipped_entries():
    return sorted(p for p in SHIPPED.iterdir() if (p / "experiment.json").is_file())


def test_the_shipped_registry_is_the_default_and_its_entries_are_specs(monkeypatch):
    monkeypatch.delenv("QGZOO_REGISTRY", raising=False)
    assert files.registry_dir().resolve() == SHIPPED
    folders = shipped_entries()
    assert zoo.names() == [p.name for p in folders] and folders
    # The physical closures' kinds come from plugins, which this suite hides: the
    # specs are checked as JSON, not validated as Experiments.
    for folder in folders:
        spec = json.loads((folder / "experiment.json").read_text())
        assert isinstance(spec["network"]["kind"], str) and spec["network"]["kind"], folder.name
        if (folder / "parameterization.eqx").exists():  # trained here, or published
            trained_here = TrainingSpec.model_validate(spec["training"]).trains
            assert trained_here or (folder / "published").is_dir(), folder.name
            assert (folder / "card.md").is_file(), f"{folder.name} has weights but no card"


def test_entries_are_chosen_by_resolution_and_scored_on_their_own_benchmarks():
    everything = zoo.names()
    at_32, at_64 = zoo.names(lores_nx=32), zoo.names(lores_nx=64)
    assert at_64 == ["cnn-flux-offline-256", "cnn-flux-online-256", "cnn-jet-tuned-256",
                     "cnn-offline-256", "ross2023-backscatter", "ross2023-fcnn",
                     "ross2023-hybrid-symbolic", "ross2023-smagorinsky", "ross2023-zanna-bolton"]
    assert sorted(at_32 + at_64) == everything
    assert zoo.grids("ross2023-fcnn") == (256, 64) and zoo.grids("none") == (128, 32)
    assert zoo.benchmarks("ross2023-fcnn") == ("eddy-256-64", "jet-256-64")
    assert zoo.benchmarks("cnn-offline") == ("eddy-128-32", "jet-128-32")
    assert zoo.benchmarks("cnn-jet-tuned-256") == ("jet-256-64", "eddy-256-64")
    assert comparing.default_entries("eddy-128-32") == at_32
    assert comparing.default_entries("jet-256-64") == at_64
    assert zoo.published("ross2023-fcnn").name == "published"
    assert zoo.published("cnn-offline") is None


def test_shipped_benchmarks_match_their_presets():

    for path in sorted((SHIPPED / "references").glob("*.npz")):
        bench = Benchmark.load(path)
        name, _, protocol = path.stem.partition(".")
        assert bench.name == name and shipped_path(name, protocol or "restarts") == path
        preset = qgzoo.ReferenceSpec.model_validate(REFERENCES[bench.name])
        operator1 = validate_component("coarsener", {"kind": "operator1"})
        assert bench.reference == preset.with_coarsener(operator1), bench.name
        assert bench.coarsener == {"kind": "operator1"}
        n = bench.reference.lores_nx
        if protocol:
            settings = PROTOCOLS[protocol]
            assert bench.protocol == settings and bench.protocol_name == protocol
            assert bench.initial_q.shape == (settings.hires_runs, 2, n, n)
            assert bench.hires.n_snapshots == settings.hires_runs * settings.n_snapshots
        else:
            assert bench.protocol is None
            assert bench.initial_q.shape == (3 * bench.reference.n_test_runs, 2, n, n)
            assert bench.hires.n_snapshots == (bench.reference.n_runs
                                               * bench.reference.n_hires_snapshots)
        assert all(np.isfinite(v).all() for v in bench.hires.quantiles.values())


def test_an_entry_whose_plugin_is_missing_is_named_not_fatal(registry, capsys):
    write_entry(registry, "plain")
    folder = write_entry(registry, "needs-plugin")
    spec = json.loads((folder / "experiment.json").read_text())
    spec["network"] = {"kind": "not_installed_closure", "constant": 0.1}
    (folder / "experiment.json").write_text(json.dumps(spec))
    assert zoo.names() == ["needs-plugin", "plain"]
    assert zoo.unavailable("plain") is None
    problem = zoo.unavailable("needs-plugin")
    assert "network" in problem and "not_installed_closure" in problem
    assert zoo.network_kind("needs-plugin") == "not_installed_closure"
    assert cli.main(["zoo", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "fixed constants" in lines["plain"]
    assert "unavailable" in lines["needs-plugin"] and "not_installed_closure" in lines["needs-plugin"]


def test_published_scores_are_those_of_the_paper_on_presets():
    """Every published score names a reference preset and has a mean; the values are Ross et
    al.'s table as SCIENCE.md quotes it."""
    for name in zoo.names():
        for bench, scores in zoo.published_scores(name).items():
            assert bench in REFERENCES and isinstance(scores["mean"], float), (name, bench)
    assert zoo.published_scores("ross2023-backscatter") == {
        "eddy-256-64": {"mean": 0.75, "min": 0.04, "positive": 18}, "jet-256-64": {"mean": 0.10}}
    assert zoo.published_scores("ross2023-fcnn")["eddy-256-64"] == {
        "mean": 0.73, "min": 0.44, "positive": 18}
    assert zoo.published_scores("ross2023-smagorinsky")["jet-256-64"] == {"mean": -0.74}
    assert zoo.published_scores("cnn-offline") == {} == zoo.published_scores("not-an-entry")
