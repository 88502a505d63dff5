"""The main job: `qgzoo demo` compares the shipped zoo on the shipped references."""

import json

import numpy as np
import pytest

from qgzoo import zoo
from qgzoo.app import demo
from qgzoo.core import plugins
from qgzoo.evaluation.results import BASELINE


@pytest.fixture
def every_plugin():
    """The zoo's physical closures come from qgzoo-physical: load every installed plugin."""
    old = plugins.use_registry(plugins.load_registry())
    yield
    plugins.use_registry(old)


@pytest.mark.slow
def test_demo_compares_every_shipped_entry(every_plugin, tmp_path):
    comparison = demo.main(out=tmp_path, figures=True)
    rows = {row["entry"]: row for row in comparison.rows()}
    assert set(rows) == set(zoo.names()) and len(rows) >= 8
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
        assert (tmp_path / name).stat().st_size > 0, name
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert {row["entry"] for row in board["rows"]} == set(rows)
    assert board["held_out_runs"] == {"eddy-128-32": [6, 7], "jet-128-32": [2, 3]}
    assert np.isfinite(rows["cnn-offline"]["mean_jet-128-32"])
