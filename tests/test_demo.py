"""The main job: `qgzoo demo` compares the shipped zoo on the shipped references."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from qgzoo import zoo
from qgzoo.app import demo
from qgzoo.core import files, plugins
from qgzoo.evaluation.benchmark import load_benchmark
from qgzoo.evaluation.comparison import MAIN_BENCHMARK
from qgzoo.evaluation.results import BASELINE


@pytest.fixture
def every_plugin():
    """The zoo's physical closures come from qgzoo-physical: load every installed plugin."""
    old = plugins.use_registry(plugins.load_registry())
    yield
    plugins.use_registry(old)


#: The entries the demo test compares: the baseline's twin, the CNN fitted offline and its
#: online fine-tuning (whose scores it checks; their runs are shipped, so they are read),
#: and a closure from a plugin (computed). ``test_every_shipped_entry_loads_and_runs``
#: covers the others.
DEMO_ENTRIES = ("none", "cnn-offline", "cnn-finetuned", "backscatter")


@pytest.fixture
def small_zoo(tmp_path, monkeypatch):
    """A registry holding ``DEMO_ENTRIES`` and the shipped benchmarks."""
    shipped = files.registry_dir()
    registry = tmp_path / "registry"
    for name in (*DEMO_ENTRIES, "references"):
        shutil.copytree(shipped / name, registry / name)
    monkeypatch.setenv(files.ENV_REGISTRY, str(registry))
    return registry


@pytest.mark.slow
def test_demo_compares_every_entry_of_the_zoo(every_plugin, small_zoo, tmp_path, capsys):
    out = tmp_path / "demo"
    comparison = demo.main(out=out, figures=True)
    rows = {row["entry"]: row for row in comparison.rows()}
    # The networks' runs are read from the zoo; the closure's are computed, and the demo
    # says which is which.
    for bench in comparison.benchmarks:
        for name in ("cnn-offline", "cnn-finetuned"):
            assert comparison.results[name, bench.name].origin == "shipped"
        assert comparison.results["backscatter", bench.name].origin == "computed"
    said = capsys.readouterr().out
    assert "runs computed: backscatter (eddy-128-32, jet-128-32)" in said
    assert "cnn-offline (eddy-128-32, jet-128-32)" in said.split("runs shipped:")[1]
    assert set(rows) == set(DEMO_ENTRIES) == set(zoo.names())
    # The zoo's `none` runs exactly the baseline's model: every score is 0.
    assert comparison.scores("none", "eddy-128-32") == {
        name: 0.0 for name in comparison.scores("none", "eddy-128-32")}
    # The CNN fitted offline and its online fine-tuning beat no parameterization
    # on the high-resolution climate (the README's leaderboard has 16 and 14 of 18).
    for name in ("cnn-offline", "cnn-finetuned"):
        assert rows[name]["stable"] == "6/6"
        assert rows[name]["mean"] > 0 and rows[name]["better"] >= 12, rows[name]
    # Costs are ratios to models timed in the same process.
    costs = comparison.ms_per_step
    assert costs["high resolution"] > costs[BASELINE] > 0
    for name in ("leaderboard.md", "leaderboard.csv", "scores.csv", "report.md",
                 "similarity.png", "spectra.png", "snapshots.png", "loss_curves.png"):
        assert (out / name).stat().st_size > 0, name
    board = json.loads((out / "leaderboard.json").read_text())
    assert {row["entry"] for row in board["rows"]} == set(rows)
    assert board["held_out_runs"] == {"eddy-128-32": [6, 7], "jet-128-32": [2, 3]}
    assert np.isfinite(rows["cnn-offline"]["mean_jet-128-32"])


def test_every_shipped_entry_loads_and_runs(every_plugin):
    """Each entry's parameterization predicts a finite forcing on its benchmark's held-out
    states, shaped as the state."""
    bench = load_benchmark(MAIN_BENCHMARK)
    lores = bench.lores_model()
    for name in zoo.names():
        assert zoo.unavailable(name) is None, (name, zoo.unavailable(name))
        parameterization = zoo.load(name)
        for q in bench.initial_q[:2]:
            forcing = np.asarray(parameterization.q_forcing_at(lores, jnp.asarray(q)))
            assert forcing.shape == q.shape and np.isfinite(forcing).all(), name
