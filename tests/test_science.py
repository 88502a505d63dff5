"""Online training must beat the model with no parameterization on held-out runs."""

import pytest

import qgzoo
from qgzoo.evaluation.rollout_error import heldout_rollout_error
from qgzoo.components.networks import NoClosure
from qgzoo.training.presets import small_experiment
from qgzoo.training.trainer import Setup


@pytest.mark.slow
def test_online_training_beats_no_parameterization_on_heldout_runs(small_data):
    experiment = small_experiment(steps=400)
    trained = qgzoo.train(experiment, data=small_data, progress=False)
    stats, test = small_data.split("train").stats(), small_data.split("test")
    untrained = Setup.from_experiment(experiment, stats).parameterization
    for horizon in (10, 50):  # the training length, and five times longer
        def error(p):
            return heldout_rollout_error(experiment, p, test, stats, rollout_steps=horizon)
        none, before, after = error(NoClosure()), error(untrained), error(trained.parameterization)
        assert after < 0.95 * none, (horizon, after, none)
        assert after < before, (horizon, after, before)
