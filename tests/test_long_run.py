"""Long runs from random initial conditions (Ross et al.'s protocol): the time means
accumulated during the run, the snapshots, blow-ups, the protocol's step counts and a
comparison under it."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyqg_jax.steppers import AB3Stepper, SteppedModel

from qgzoo import zoo
from qgzoo.app import demo
from qgzoo.components.networks import NoClosure
from qgzoo.core.errors import UserError
from qgzoo.data.reference import ReferenceSpec
from qgzoo.evaluation import comparison, protocols, results
from qgzoo.evaluation.benchmark import Benchmark, load_benchmark, shipped_path
from qgzoo.physics import budget, qg
from qgzoo.simulate import long_run as long_run_module
from qgzoo.simulate.long_run import random_initial_q, run_long

jax.config.update("jax_enable_x64", True)

N_STEPS, AVERAGE_FROM, AVERAGE_EVERY, SNAPSHOT_EVERY = 60, 25, 4, 10


@pytest.fixture(scope="module")
def model():
    return qg.make_model(qg.PRESETS["eddy"], 16)


@pytest.fixture(scope="module")
def run(model):
    q0 = random_initial_q(model, jax.random.split(jax.random.key(3), 2))
    return q0, run_long(model, NoClosure(), AB3Stepper(dt=3600.0), q0, n_steps=N_STEPS,
                        average_from=AVERAGE_FROM, average_every=AVERAGE_EVERY,
                        snapshot_every=SNAPSHOT_EVERY)


def _reference_trajectory(model, q0):
    """Every state of one run, stepped one by one with pyqg-jax's own model (no qgzoo)."""
    stepped = SteppedModel(model, AB3Stepper(dt=3600.0))
    state = stepped.initialize_stepper_state(model.create_initial_state(jax.random.key(0))
                                             .update(q=q0))
    states, step = [q0], jax.jit(stepped.step_model)
    for _ in range(N_STEPS):
        state = step(state)
        states.append(state.state.q)
    return np.stack(states)


def test_time_means_and_snapshots_equal_those_of_a_plain_loop(model, run):
    q0, result = run
    states = _reference_trajectory(model, q0[1])
    averaged = [t for t in range(AVERAGE_FROM + 1, N_STEPS + 1) if t % AVERAGE_EVERY == 0]
    assert result.n_averaged == len(averaged) == 9
    spectra = [budget.budget_spectra(model, jnp.asarray(states[t])) for t in averaged]
    for name in ("KEspec", "KEflux", "APEgenspec", "KEfrictionspec"):
        expected = np.mean([s[name] for s in spectra], axis=0)
        np.testing.assert_allclose(result.budget[name][1], expected, rtol=1e-10,
                                   atol=1e-12 * np.abs(expected).max())
    assert list(result.snapshot_steps) == [30, 40, 50, 60]
    np.testing.assert_allclose(result.snapshots[1], states[[30, 40, 50, 60]], rtol=1e-12,
                               atol=1e-20)
    assert list(result.ke_steps) == [10, 20, 30, 40, 50, 60]
    assert np.all(result.blowup_step == -1)


def test_a_run_that_is_not_finite_is_left_out_and_spares_the_others(model, run):
    q0, result = run
    bad = q0.at[0, 0, 3, 3].set(jnp.nan)
    broken = run_long(model, NoClosure(), AB3Stepper(dt=3600.0), bad, n_steps=N_STEPS,
                      average_from=AVERAGE_FROM, average_every=AVERAGE_EVERY,
                      snapshot_every=SNAPSHOT_EVERY)
    assert list(broken.blowup_step) == [0, -1]
    assert np.all(np.isnan(broken.budget["KEspec"][0])) and np.all(np.isnan(broken.snapshots[0]))
    np.testing.assert_array_equal(broken.budget["KEspec"][1], result.budget["KEspec"][1])
    settings = protocols.LongRunProtocol(n_snapshots=2)
    climate = protocols.climate_of(model, broken, settings)
    assert climate.n_snapshots == 2
    assert protocols.climate_of(model, broken.__class__(**{**broken.__dict__, "blowup_step":
                                                          np.array([0, 5])}), settings) is None


def test_a_stopped_run_goes_on_from_its_last_block_and_ends_as_an_unbroken_one(
        model, run, tmp_path, monkeypatch):
    q0, unbroken = run
    checkpoint = tmp_path / "run.partial.npz"
    options = dict(n_steps=N_STEPS, average_from=AVERAGE_FROM, average_every=AVERAGE_EVERY,
                   snapshot_every=SNAPSHOT_EVERY, checkpoint=checkpoint)
    save, saves = long_run_module._save_progress, []

    def save_then_stop(*args):
        save(*args)
        saves.append(args[-2])  # the step saved at
        if len(saves) == 4:
            raise KeyboardInterrupt
    monkeypatch.setattr(long_run_module, "_save_progress", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_long(model, NoClosure(), AB3Stepper(dt=3600.0), q0, **options)
    monkeypatch.setattr(long_run_module, "_save_progress", save)
    assert saves == [10, 20, 30, 40] and checkpoint.exists()

    taken = []
    call = long_run_module.StepLoop.__call__
    monkeypatch.setattr(long_run_module.StepLoop, "__call__",
                        lambda self, carry, first, n: taken.append(n) or call(self, carry, first, n))
    resumed = run_long(model, NoClosure(), AB3Stepper(dt=3600.0), q0, **options)
    assert sum(taken) == N_STEPS - 40
    assert not checkpoint.exists()
    for name, values in unbroken.budget.items():
        np.testing.assert_array_equal(resumed.budget[name], values)
    np.testing.assert_array_equal(resumed.snapshots, unbroken.snapshots)
    np.testing.assert_array_equal(resumed.ke, unbroken.ke)
    assert list(resumed.snapshot_steps) == list(unbroken.snapshot_steps)

    # a progress file of other arguments is not taken for this run's
    monkeypatch.setattr(long_run_module, "_save_progress", save_then_stop)
    saves.clear()
    with pytest.raises(KeyboardInterrupt):
        run_long(model, NoClosure(), AB3Stepper(dt=3600.0), q0[::-1], **options)
    monkeypatch.setattr(long_run_module, "_save_progress", save)
    taken.clear()
    again = run_long(model, NoClosure(), AB3Stepper(dt=3600.0), q0, **options)
    assert sum(taken) == N_STEPS
    np.testing.assert_array_equal(again.budget["KEspec"], unbroken.budget["KEspec"])


def test_ross2023_runs_ten_years_of_360_days_averaged_from_year_five():
    steps = protocols.PROTOCOLS["ross2023"].steps(3600.0)
    assert steps == dict(n_steps=10 * 360 * 24, average_from=5 * 360 * 24, average_every=24,
                         snapshot_every=1000)
    with pytest.raises(UserError, match="does not divide"):
        protocols.PROTOCOLS["ross2023"].steps(7000.0)
    with pytest.raises(UserError, match="fewer than n_snapshots"):
        protocols.LongRunProtocol(years=1, average_from_years=0.9, n_snapshots=10).steps(3600.0)
    with pytest.raises(ValueError, match="average_from_years"):
        protocols.LongRunProtocol(years=1, average_from_years=1)
    with pytest.raises(UserError, match="unknown protocol"):
        protocols.protocol("ross2022")


def test_ensembles_differ_by_name_and_repeat_by_seed():
    settings = protocols.PROTOCOLS["ross2023"]
    hires, lores = settings.keys("hires", 2), settings.keys("lores", 2)
    assert not np.array_equal(jax.random.key_data(hires), jax.random.key_data(lores))
    np.testing.assert_array_equal(jax.random.key_data(lores),
                                  jax.random.key_data(settings.keys("lores", 2)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    reference = ReferenceSpec(hires_nx=32, lores_nx=16, n_runs=4)
    settings = protocols.LongRunProtocol(years=0.1, average_from_years=0.05,
                                         snapshot_every_hours=100, n_snapshots=2,
                                         hires_runs=2, lores_runs=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QGZOO_CACHE", str(tmp_path_factory.mktemp("cache")))
        run = protocols.hires_long_run(reference, settings, progress=False)
    return Benchmark.from_long_runs("eddy-256-64", reference, {"kind": "operator1"}, settings,
                                    run), run


def test_the_benchmark_of_long_runs_coarsens_every_kept_snapshot(tiny, tmp_path):
    bench, run = tiny
    assert bench.offline_q.shape == (2 * run.snapshots.shape[1], 2, 16, 16)
    assert bench.hires.n_snapshots == 4
    loaded = Benchmark.load(bench.save(tmp_path / "b.npz"))
    assert loaded.protocol == bench.protocol and loaded.key == bench.key
    np.testing.assert_array_equal(loaded.hires_ke, bench.hires_ke)


def test_a_comparison_under_the_protocol_scores_the_noise_and_shows_published_means(
        tiny, tmp_path, monkeypatch):
    bench, _ = tiny
    entry = tmp_path / "registry" / "published-none"
    entry.mkdir(parents=True)
    (entry / "experiment.json").write_text(json.dumps({"network": {"kind": "none"}}))
    (entry / zoo.PUBLISHED_SCORES).write_text(json.dumps(
        {"source": "a paper", "scores": {"eddy-256-64": {"mean": -0.86}}}))
    monkeypatch.setenv("QGZOO_REGISTRY", str(tmp_path / "registry"))
    result = comparison.compare(["published-none"], [bench],
                                out=tmp_path / "out", figures=False, progress=False)
    rows = {row["entry"]: row for row in result.rows()}
    assert set(rows) == {"published-none", comparison.NOISE}
    # The other runs of the same model are no better or worse by construction, but their
    # scores are not exactly 0: sampling alone moves them.
    assert rows[comparison.NOISE]["stable"] == "2/2"
    assert np.isfinite(rows[comparison.NOISE]["mean"]) and rows[comparison.NOISE]["mean"] != 0
    assert rows["published-none"]["published_mean_eddy-256-64"] == -0.86
    assert rows[comparison.NOISE]["published_mean_eddy-256-64"] is None
    assert "-0.86" in result.table()


def test_shipped_runs_are_read_instead_of_computed_and_the_demo_scores_only_those(
        tiny, tmp_path, monkeypatch):
    bench, _ = tiny
    registry = tmp_path / "registry"
    entry = registry / "tiny-none"
    entry.mkdir(parents=True)
    (entry / "experiment.json").write_text(json.dumps(
        {"reference": {"hires_nx": 32, "lores_nx": 16}, "network": {"kind": "none"}}))
    monkeypatch.setenv("QGZOO_REGISTRY", str(registry))
    for name in comparison.FIELD_BENCHMARKS:
        dataclasses.replace(bench, name=name).save(shipped_path(name, "ross2023"))
    assert demo.field(tmp_path / "field", figures=False) is None  # no runs shipped yet
    benches = [load_benchmark(name, "ross2023") for name in comparison.FIELD_BENCHMARKS]
    first = comparison.compare(["tiny-none"], benches, out=tmp_path / "first", ship=True,
                               figures=False, progress=False)
    # tiny-none is the baseline's model: the same content, so the run shipped a moment
    # before under the baseline's name is read.
    origins = {name: r.origin for (name, _), r in first.results.items()}
    assert origins == {comparison.BASELINE: "computed", comparison.NOISE: "computed",
                       "tiny-none": "shipped"}
    index = json.loads((results.shipped_runs(benches[0]) / "index.json").read_text())
    assert sorted(index["entries"].values()) == [sorted([comparison.BASELINE, "tiny-none"]),
                                                 [comparison.NOISE]]
    again = demo.field(tmp_path / "field", figures=False)
    assert {r.origin for r in again.results.values()} == {"shipped"}
    for key, result in first.results.items():
        np.testing.assert_array_equal(again.results[key].climate.spectra["KEflux"],
                                      result.climate.spectra["KEflux"])
