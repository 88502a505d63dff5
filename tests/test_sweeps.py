"""Sweeps on Dask: trials trained and scored on worker processes, finished ones kept,
failed ones recorded, a killed worker's trial run again."""

import json
import os
import pathlib
import re
import shutil
import signal
import threading
import time

import numpy as np
import pytest

import qgzoo
from qgzoo.app import cli
from qgzoo.data.reference import SMALL_REFERENCE
from qgzoo.sweeps import Sweep

TINY_CNN = {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]}
BASE = {"reference": SMALL_REFERENCE, "network": TINY_CNN, "loss": {"kind": "forcing_mse"},
        "training": {"steps": 4, "batch_size": 2, "rollout_steps": 0}}


def grid(**training) -> dict:
    base = json.loads(json.dumps(BASE))
    base["training"] |= training
    return {"base": base, "axes": {"training.seed": [0, 1, 2],
                                   "optimizer.learning_rate": [1e-3, 3e-3]}}


def test_axes_make_a_grid_or_random_draws_and_bad_ones_are_named_before_any_run():
    trials = Sweep.model_validate(grid()).trials()
    assert [t.values for t in trials] == [
        {"training.seed": s, "optimizer.learning_rate": lr}
        for s in (0, 1, 2) for lr in (1e-3, 3e-3)]
    assert trials[1].experiment.optimizer.learning_rate == 3e-3
    assert trials[1].configuration == {"optimizer.learning_rate": 3e-3}
    assert len({t.name for t in trials}) == 6
    log = Sweep.model_validate({"base": BASE, "axes": {"optimizer.learning_rate": {
        "low": 1e-4, "high": 1e-2, "n": 3, "scale": "log"}}}).trials()
    np.testing.assert_allclose([t.values["optimizer.learning_rate"] for t in log],
                               [1e-4, 1e-3, 1e-2], rtol=1e-12)
    drawn = Sweep.model_validate({"base": BASE, "mode": "random", "n_trials": 50, "seed": 3,
                                  "axes": {"optimizer.learning_rate": {
                                      "low": 1e-4, "high": 1e-2, "scale": "log"}}}).trials()
    rates = np.array([t.values["optimizer.learning_rate"] for t in drawn])
    assert ((rates >= 1e-4) & (rates <= 1e-2)).all() and (rates < 1e-3).sum() > 10
    with pytest.raises(ValueError, match=r"axes.training.sead: the experiment has no field "
                                         r"'sead' there; fields: \["):
        Sweep.model_validate({"base": BASE, "axes": {"training.sead": [0, 1]}})
    with pytest.raises(ValueError, match=r"optimizer.learning_rate: Input should be greater "
                                         r"than 0"):
        Sweep.model_validate({"base": BASE, "axes": {"optimizer.learning_rate": [1e-3, -1]}})


@pytest.fixture(scope="module")
def swept(small_data, tmp_path_factory):
    """The sweep of 3 seeds x 2 learning rates, run on a local cluster of 2 workers."""
    out = tmp_path_factory.mktemp("swept") / "sweep"
    return out, qgzoo.sweep(grid(), out, n_workers=2, progress=False)


def test_the_readme_sweep_is_valid_and_an_unknown_benchmark_is_named():
    text = pathlib.Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = text[text.index("## Sweeps"):]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    trials = Sweep.model_validate(example).trials()
    assert len(trials) == 9 and {t.experiment.training.seed for t in trials} == {0, 1, 2}
    np.testing.assert_allclose(sorted({t.experiment.optimizer.learning_rate for t in trials}),
                               [1e-4, 1e-3, 1e-2], rtol=1e-12)
    with pytest.raises(ValueError, match=r"benchmark: unknown reference 'eddy-1-1'; presets: "):
        Sweep.model_validate({**example, "benchmark": "eddy-1-1"})
    # The JSON Schema (qgzoo schema --sweep) accepts it and refuses a misspelt axis range.
    from jsonschema import Draft202012Validator
    from qgzoo.sweeps import sweep_schema
    validator = Draft202012Validator(sweep_schema())
    validator.validate(example)
    bad = json.loads(json.dumps(example))
    bad["axes"]["optimizer.learning_rate"]["hihg"] = 1
    assert not validator.is_valid(bad)


def test_a_zoo_entry_or_a_file_is_a_base(tmp_path):
    from qgzoo import zoo
    name = "cnn-offline"  # its network is built in: no plugin needed
    named = Sweep.model_validate({"base": name, "axes": {"training.seed": [0, 1]}})
    assert named.base == zoo.experiment(name)
    path = tmp_path / "base.json"
    path.write_text(qgzoo.Experiment.model_validate(BASE).to_json())
    from_file = Sweep.model_validate({"base": str(path), "axes": {"training.seed": [0, 1]}})
    assert from_file.base == qgzoo.Experiment.model_validate(BASE)
    with pytest.raises(ValueError, match=r"base\n.*'no-such' is neither a zoo entry \("):
        Sweep.model_validate({"base": "no-such"})


def test_a_sweep_of_three_seeds_and_two_rates_on_two_workers(swept, small_data, capsys):
    out, result = swept
    rows = result.rows()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"done"}
    # A trial on a worker is the same training as in this process.
    first = result.trials[0]
    here = qgzoo.train(first.experiment, data=small_data, progress=False)
    logged = qgzoo.load(out / "trials" / first.name).history
    assert [h["loss"] for h in logged] == [h["loss"] for h in here.history]
    assert rows[0]["train_loss"] == here.history[-1]["loss"]
    # The spread per learning rate: mean and standard deviation over the three seeds.
    summary = {row["optimizer.learning_rate"]: row for row in result.summary()}
    assert set(summary) == {1e-3, 3e-3}
    for rate, row in summary.items():
        r2 = [r["r2"] for r in rows if r["optimizer.learning_rate"] == rate]
        assert row["seeds"] == [0, 1, 2] and row["failed"] == 0
        assert row["r2"] == pytest.approx(sum(r2) / 3, rel=1e-12)
        spread = (sum((x - sum(r2) / 3) ** 2 for x in r2) / 2) ** 0.5
        assert row["r2_std"] == pytest.approx(spread, rel=1e-9)
    # A rerun runs nothing: every trial is done.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/result.json")}
    again = qgzoo.sweep(grid(), out, n_workers=2)
    assert "6 trials, 6 done before, 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("trials/*/result.json")} == stamps
    assert again.summary() == result.summary()


def test_a_failed_trial_is_recorded_and_the_others_go_on(small_data, tmp_path, capsys):
    spec = {"base": BASE, "axes": {"training.seed": [0, 1],
                                   "training.init_from": [None, "no-such-entry"]}}
    result = qgzoo.sweep(spec, tmp_path / "sweep", n_workers=2, progress=False)
    status = {(r["training.seed"], r["training.init_from"]): r for r in result.rows()}
    assert {k: v["status"] for k, v in status.items()} == {
        (0, None): "done", (1, None): "done",
        (0, "no-such-entry"): "failed", (1, "no-such-entry"): "failed"}
    assert status[0, "no-such-entry"]["error"].startswith(
        "UserError: training.init_from: 'no-such-entry' is neither a zoo entry")
    failed_row = [r for r in result.summary() if r["training.init_from"] == "no-such-entry"]
    assert failed_row[0]["failed"] == 2 and failed_row[0]["seeds"] == []
    assert cli.main(["sweep", str(_write(tmp_path / "s.json", spec)), "--out",
                     str(tmp_path / "sweep"), "--workers", "1"]) == 0
    assert "2 seeds [0, 1]" in capsys.readouterr().out


def test_compare_shows_a_sweep_as_one_row_per_configuration_with_its_spread(swept, tmp_path):
    from qgzoo.data import store
    from qgzoo.evaluation import figures
    from qgzoo.evaluation.benchmark import Benchmark
    # Two seeds per learning rate of the sweep, copied as a sweep of their own (fewer runs).
    out = tmp_path / "sweep"
    for trial in swept[1].trials:
        if trial.experiment.training.seed < 2:
            shutil.copytree(swept[0] / "trials" / trial.name, out / "trials" / trial.name)
    # A short benchmark at the trials' low resolution: 6 samples of 2 runs.
    spec = qgzoo.ReferenceSpec(hires_nx=32, lores_nx=16, n_runs=2, n_test_runs=1, spinup_steps=50,
                               n_samples=6, n_hires_snapshots=2, coarseners=[{"kind": "operator1"}])
    path = store.build_store(spec, tmp_path / "bench.zarr", progress=False)
    bench = Benchmark.from_store("small", spec, {"kind": "operator1"}, path, progress=False)
    comparison = qgzoo.compare([str(out), "none"], [bench], out=tmp_path / "compare",
                               figures=False, progress=False)
    assert len(comparison.entries) == 5
    rows = {row["entry"]: row for row in comparison.rows()}
    assert set(rows) == {"sweep learning_rate=0.001", "sweep learning_rate=0.003", "none"}
    for name in ("sweep learning_rate=0.001", "sweep learning_rate=0.003"):
        seeds = [e.name for e in comparison.entries if e.group == name]
        assert sorted(seeds) == [f"{name} seed {s}" for s in (0, 1)]
        means = [np.mean(list(comparison.scores(s, "small").values())) for s in seeds]
        assert rows[name]["seeds"] == 2
        assert rows[name]["mean"] == pytest.approx(np.mean(means), rel=1e-12)
        assert rows[name]["mean_std"] == pytest.approx(np.std(means, ddof=1), rel=1e-9)
        runs = [comparison.results[s, "small"].blowup_step.size for s in seeds]
        assert rows[name]["stable"].endswith(f"/{sum(runs)}")
    assert rows["none"]["seeds"] == 1 and "mean_std" not in rows["none"]
    # A trained folder named like one of the sweep's rows would merge into it: refused.
    clash = tmp_path / "sweep learning_rate=0.001"
    shutil.copytree(next((out / "trials").iterdir()), clash)
    with pytest.raises(qgzoo.UserError, match=r"a sweep's row and an entry share the name "
                                              r"\['sweep learning_rate=0.001'\]; rename"):
        qgzoo.compare([str(out), str(clash)], [bench], out=None, progress=False)
    board = (tmp_path / "compare" / "leaderboard.md").read_text()
    assert "| seeds |" in board and " ± " in board
    figure = figures.mean_similarity(comparison)
    bars = [patch.get_width() for patch in figure.axes[0].patches]
    assert bars == pytest.approx([row["mean"] for row in rows.values()], rel=1e-12) or \
        sorted(bars) == pytest.approx(sorted(row["mean"] for row in rows.values()), rel=1e-12)


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_loses_no_finished_trial(small_data, tmp_path):
    from dask.distributed import Client, LocalCluster
    out = tmp_path / "sweep"
    spec = grid(steps=40, checkpoint_every=1)
    kept = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        def kill_a_worker_after_the_first_result():
            deadline = time.monotonic() + 600
            while not list(out.glob("trials/*/result.json")) and time.monotonic() < deadline:
                time.sleep(0.05)
            kept.update({p: p.read_bytes() for p in out.glob("trials/*/result.json")})
            pid = next(iter(client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            kept["killed"] = pid

        killer = threading.Thread(target=kill_a_worker_after_the_first_result)
        killer.start()
        result = qgzoo.sweep(spec, out, scheduler=cluster.scheduler_address, progress=False)
        killer.join()
    assert "killed" in kept
    assert {r["status"] for r in result.rows()} == {"done"} and len(result.rows()) == 6
    for path, content in kept.items():
        if path != "killed":
            assert path.read_bytes() == content  # finished before the kill, kept as it was
    for trial in result.trials:
        assert [h["step"] for h in qgzoo.load(out / "trials" / trial.name).history] == \
            list(range(40))
