"""The comparison on the small reference: benchmark, scores, blow-ups, report files, caching, resolve."""

import csv
import dataclasses
import json
import math
import shutil

import equinox as eqx
import numpy as np
import pytest

import qgzoo
from qgzoo.evaluation import climate
from qgzoo.data import store
from qgzoo.evaluation import comparison as comparing, results
from qgzoo.evaluation.benchmark import OFFLINE_SAMPLES_PER_RUN, Benchmark
from qgzoo.evaluation.results import BASELINE, Entry
from qgzoo.components.networks import AbstractParameterization, NoClosure
from qgzoo.core.schema import validate_component

NAME = "eddy-64-16"
AB3 = {"kind": "ab3", "dt": 3600.0}
TAU = 3600.0  # s


class AntiDamping(AbstractParameterization):
    """S = +q / tau: exponential growth with e-folding time tau (s); blows up within hours."""

    tau: float

    def q_forcing(self, full_state, model):
        return full_state.q / self.tau


class Damping(AbstractParameterization):
    """S = -q / tau: a stable linear damping."""

    tau: float

    def q_forcing(self, full_state, model):
        return -full_state.q / self.tau


TWIN = Entry("none-twin", NoClosure(), AB3)
UNSTABLE = Entry("unstable", AntiDamping(TAU), AB3)
DAMPED = Entry("damped", Damping(30 * 86400.0), AB3)


@pytest.fixture(scope="module")
def bench(small_reference, small_data):
    """The benchmark of the small reference (its store was built by ``small_data``)."""
    coarsener = {"kind": "operator1"}
    spec = small_reference.with_coarsener(validate_component("coarsener", coarsener))
    return Benchmark.from_store(NAME, spec, coarsener, store.store_path(spec),
                                progress=False)


def counting_run_entry(monkeypatch):
    """Patch ``results.run_entry`` to record the names of the entries it computes."""
    computed = []
    original = results.run_entry

    def counting(entry, bench, **options):
        computed.append(entry.name)
        return original(entry, bench, **options)

    monkeypatch.setattr(results, "run_entry", counting)
    return computed


@pytest.fixture(scope="module")
def compared(bench, tmp_path_factory):
    """(comparison, out folder, entries computed) of the twin and the unstable entry."""
    out = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as monkeypatch:
        computed = counting_run_entry(monkeypatch)
        comparison = comparing.compare([TWIN, UNSTABLE], benchmarks=[bench], out=out,
                                     figures=False, progress=False)
    return comparison, out, computed


# --- the benchmark -----------------------------------------------------------------------

def test_benchmark_holds_the_held_out_runs_of_the_store(bench, small_data, small_reference):
    test_run = small_reference.n_runs - 1  # one held-out run: the last
    assert bench.test_runs == [test_run]
    q, forcing = (np.asarray(small_data.fields[name][test_run])
                  for name in ("q", "q_forcing_total"))
    np.testing.assert_array_equal(bench.initial_q, q[[0, 100, 200]])  # 3 starts of 300 samples
    samples = np.linspace(0, small_reference.n_samples - 1, OFFLINE_SAMPLES_PER_RUN).astype(int)
    assert samples[0] == 0 and samples[-1] == small_reference.n_samples - 1
    np.testing.assert_array_equal(bench.offline_q, q[samples])
    np.testing.assert_array_equal(bench.offline_forcing, forcing[samples])
    assert bench.hires_snapshot.shape == (2, small_reference.hires_nx, small_reference.hires_nx)
    assert bench.hires_ke.shape == (1, small_reference.n_samples, 2) and np.all(bench.hires_ke > 0)
    assert bench.hires.n_snapshots == small_reference.n_runs * small_reference.n_hires_snapshots
    bound = 0.65 * np.pi / (1e6 / small_reference.lores_nx)  # pyqg's filter: 1 up to 0.65 pi / dx
    assert 0.9 * bound <= bench.kmax <= bound


def test_benchmark_round_trips_through_npz(bench, tmp_path):
    loaded = Benchmark.load(bench.save(tmp_path / "sub" / "bench.npz"))
    assert (loaded.name, loaded.reference, loaded.coarsener) == (bench.name, bench.reference,
                                                                 bench.coarsener)
    assert loaded.key == bench.key
    np.testing.assert_array_equal(loaded.initial_q, bench.initial_q)
    np.testing.assert_array_equal(loaded.hires_ke, bench.hires_ke)
    # The bulky held-out fields are shipped in single precision.
    for name in ("offline_q", "offline_forcing", "hires_snapshot"):
        np.testing.assert_array_equal(getattr(loaded, name),
                                      getattr(bench, name).astype(np.float32), err_msg=name)
    for name in bench.hires.quantiles:
        np.testing.assert_array_equal(loaded.hires.quantiles[name], bench.hires.quantiles[name])
    for name in bench.hires.spectra:
        np.testing.assert_array_equal(loaded.hires.spectra[name], bench.hires.spectra[name])
    np.testing.assert_array_equal(loaded.hires.kr, bench.hires.kr)
    assert loaded.hires.n_snapshots == bench.hires.n_snapshots


def test_schedule_runs_from_the_first_to_the_last_sample(bench):
    n = bench.reference.n_samples
    assert bench.schedule(3600.0) == dict(n_steps=n - 1, snapshot_every=1,
                                          n_snapshots=bench.reference.n_hires_snapshots)
    assert bench.schedule(900.0) == dict(n_steps=4 * (n - 1), snapshot_every=4,
                                         n_snapshots=bench.reference.n_hires_snapshots)
    for dt in (1000.0, 7200.0):
        with pytest.raises(qgzoo.UserError, match="does not divide the sample spacing"):
            bench.schedule(dt)


# --- scores, blow-ups and the files --------------------------------------------------------

def test_a_twin_of_the_baseline_runs_identically_and_scores_zero(compared, bench):
    comparison, _, _ = compared
    baseline = comparison.baseline[NAME]
    assert baseline.stable == 3 and baseline.climate is not None
    # Run again, outside the cache: the same numbers.
    again = results.run_entry(TWIN, bench)
    np.testing.assert_array_equal(again.snapshot, baseline.snapshot)
    for name in climate.DISTRIBUTION_QUANTITIES:
        np.testing.assert_array_equal(again.climate.quantiles[name], baseline.climate.quantiles[name])
    scores = comparison.scores("none-twin", NAME)
    assert list(scores) == list(climate.METRICS)
    assert scores == {metric: 0.0 for metric in climate.METRICS}
    row = next(r for r in comparison.rows() if r["entry"] == "none-twin")
    assert (row["mean"], row["min"], row["better"], row["stable"]) == (0.0, 0.0, 0, "3/3")
    assert row["blowup_days"] is None


def test_an_exponentially_growing_closure_blows_up_without_breaking_the_comparison(compared, bench):
    comparison, _, _ = compared
    result = comparison.results["unstable", NAME]
    n_steps = bench.schedule(3600.0)["n_steps"]
    # KE grows like exp(2 t / tau): it crosses 1e3 times its start after about 3.5 tau.
    assert result.blowup_step.shape == (3,) and np.all((1 <= result.blowup_step)
                                                       & (result.blowup_step <= 10))
    assert result.stable == 0 and result.climate is None
    assert np.isnan(result.snapshot).all()
    for run, step in enumerate(result.blowup_step):
        assert np.isnan(result.ke[run, result.ke_steps >= step]).all()
    assert result.ke_steps[-1] == n_steps
    scores = comparison.scores("unstable", NAME)
    assert list(scores) == list(climate.METRICS) and np.isnan(list(scores.values())).all()
    rows = comparison.rows()
    assert [r["entry"] for r in rows] == ["none-twin", "unstable"]  # the unstable ranks last
    row = rows[-1]
    assert row["stable"] == "0/3" and math.isnan(row["mean"])
    assert row["blowup_days"] == pytest.approx(result.blowup_step[0] * 3600.0 / 86400)


def test_costs_are_measured_for_every_entry_the_baseline_and_high_resolution(compared):
    comparison, _, _ = compared
    assert set(comparison.ms_per_step) == {BASELINE, "high resolution", "none-twin", "unstable"}
    assert all(math.isfinite(v) and v > 0 for v in comparison.ms_per_step.values())
    for row in comparison.rows():
        assert row["x_lores"] == pytest.approx(row["ms_per_step"] / comparison.ms_per_step[BASELINE])
        assert row["x_hires"] == pytest.approx(
            row["ms_per_step"] / comparison.ms_per_step["high resolution"])


def test_the_leaderboard_files_are_written_and_parse(compared):
    comparison, out, _ = compared
    names = ["none-twin", "unstable"]
    with (out / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["entry"] for r in rows] == names
    assert rows[1]["stable"] == "0/3" and rows[0]["stable"] == "3/3"
    assert float(rows[0]["mean"]) == 0.0 and math.isnan(float(rows[1]["mean"]))
    with (out / "scores.csv").open() as handle:
        scores = list(csv.DictReader(handle))
    assert [(r["entry"], r["benchmark"]) for r in scores] == [(n, NAME) for n in names]
    assert set(climate.METRICS) <= set(scores[0])
    assert all(float(scores[0][m]) == 0.0 for m in climate.METRICS)
    assert all(math.isnan(float(scores[1][m])) for m in climate.METRICS)
    board = json.loads((out / "leaderboard.json").read_text())
    assert [r["entry"] for r in board["rows"]] == names
    assert [(r["entry"], r["benchmark"]) for r in board["scores"]] == [(n, NAME) for n in names]
    assert board["benchmarks"] == [NAME] and board["held_out_runs"] == {NAME: [3]}
    assert board["ms_per_step"][BASELINE] > 0 and board["ms_per_step"]["high resolution"] > 0
    markdown = (out / "leaderboard.md").read_text().strip().splitlines()
    assert len(markdown) == 2 + len(names)
    assert markdown[2].startswith("| none-twin |") and markdown[3].startswith("| unstable |")
    report = (out / "report.md").read_text()
    assert f"## Similarity scores, {NAME}" in report
    assert all(f"| {n} |" in report for n in names)


def test_leaderboard_json_is_strict_json(compared):
    _, out, _ = compared

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    json.loads((out / "leaderboard.json").read_text(), parse_constant=refuse)


# --- offline skill ----------------------------------------------------------------------

def test_offline_r2_of_no_closure_and_of_the_growing_closure(compared, bench):
    comparison, _, _ = compared
    f = bench.offline_forcing
    # Predicting zero: R^2 = 1 - mean(f^2) / var(f), per layer over samples and grid points.
    expected = [1 - np.mean(f[:, z] ** 2) / np.var(f[:, z]) for z in (0, 1)]
    for name in ("none-twin", "unstable"):
        assert comparison.results[name, NAME].offline.keys() == {
            f"{s}_{o}" for s in ("r2", "correlation") for o in ("space", "time", "all")}
    # R^2 is O(1) (0 when the forcing's mean is 0): compared to an absolute 1e-12.
    np.testing.assert_allclose(comparison.results["none-twin", NAME].offline["r2_all"], expected,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(comparison.baseline[NAME].offline["r2_all"], expected,
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(comparison.baseline[NAME].transfer, 0.0)
    # Predicting q / tau.
    p = bench.offline_q / TAU
    expected = [1 - np.mean((p[:, z] - f[:, z]) ** 2) / np.var(f[:, z]) for z in (0, 1)]
    np.testing.assert_allclose(comparison.results["unstable", NAME].offline["r2_all"], expected,
                               rtol=1e-8)
    rows = {r["entry"]: r for r in comparison.rows()}
    assert rows["unstable"]["r2_upper"] == pytest.approx(expected[0], rel=1e-8)
    assert rows["unstable"]["r2_lower"] == pytest.approx(expected[1], rel=1e-8)


# --- caching -----------------------------------------------------------------------------

def test_runs_are_cached_by_content(compared, bench, tmp_path, monkeypatch):
    first, out, computed = compared
    # The twin has the baseline's content (no closure, same stepper): one run for both.
    assert sorted(computed) == sorted([BASELINE, "unstable"])
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    computed_again = counting_run_entry(monkeypatch)
    # Costs are always measured afresh (tested above); skipped here for speed.
    monkeypatch.setattr(comparing, "measure_costs", lambda entries, bench, **_: {
        **{e.name: 1.0 for e in entries}, "high resolution": 10.0})
    second = comparing.compare([TWIN, UNSTABLE, DAMPED], benchmarks=[bench], out=copy,
                             figures=False, progress=False)
    assert computed_again == ["damped"]
    assert second.scores("none-twin", NAME) == first.scores("none-twin", NAME)
    np.testing.assert_array_equal(second.results["unstable", NAME].blowup_step,
                                  first.results["unstable", NAME].blowup_step)
    assert second.results["unstable", NAME].climate is None  # read back from the cache
    damped = second.scores("damped", NAME)
    assert second.results["damped", NAME].stable == 3
    assert all(math.isfinite(v) for v in damped.values())


class StaticRate(AbstractParameterization):
    """S = rate * q with the rate a static field (as plugins keep fixed constants)."""

    rate: float = eqx.field(static=True)

    def q_forcing(self, full_state, model):
        return self.rate * full_state.q


def test_entries_differing_in_a_static_field_have_different_cache_keys():
    assert Entry("a", StaticRate(-1e-6), AB3).key != Entry("b", StaticRate(-2e-6), AB3).key


# --- resolving entries -------------------------------------------------------------------

@pytest.fixture
def empty_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("QGZOO_REGISTRY", str(tmp_path / "registry"))
    return tmp_path


def test_resolve_a_network_kind_and_refuse_what_it_cannot(empty_zoo):
    entry = comparing.resolve("none")
    assert entry.name == "none" and isinstance(entry.parameterization, NoClosure)
    assert entry.stepper["kind"] == "ab3"
    assert comparing.resolve(entry) is entry
    with pytest.raises(qgzoo.UserError, match="no-such-thing"):
        comparing.resolve("no-such-thing")
    with pytest.raises(qgzoo.UserError, match="fitted to data.*train it first"):
        comparing.resolve({"kind": "cnn", "channels": [2], "kernel_sizes": [3, 3]})
    with pytest.raises(qgzoo.UserError, match=r"repeated: \['none'\]"):
        comparing.compare(["none", "none"], benchmarks=[], out=None, progress=False)
    with pytest.raises(qgzoo.UserError, match="repeated"):
        comparing.compare([TWIN, dataclasses.replace(UNSTABLE, name="none-twin")], benchmarks=[],
                        out=None, progress=False)


def test_resolve_json_files_and_folders(empty_zoo):
    spec = empty_zoo / "plain.json"
    spec.write_text(json.dumps({"kind": "none"}))
    entry = comparing.resolve(str(spec))
    assert (entry.name, entry.source) == ("plain", str(spec))
    assert isinstance(entry.parameterization, NoClosure)
    experiment = qgzoo.Experiment(network={"kind": "none"}, stepper={"kind": "ab3", "dt": 1800.0})
    folder = empty_zoo / "untrained"
    folder.mkdir()
    (folder / "experiment.json").write_text(experiment.to_json())
    entry = comparing.resolve(str(folder))
    assert entry.name == "untrained" and entry.stepper == {"kind": "ab3", "dt": 1800.0}
    with pytest.raises(qgzoo.UserError, match="has no experiment.json"):
        comparing.entry_from_folder(empty_zoo)
