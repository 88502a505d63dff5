"""Held-out rollout error: how far low-resolution runs drift from the reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.components.losses import StateMSESpec
from qgzoo.core.fields import FieldStats
from qgzoo.data.reference import ReferenceData
from qgzoo.simulate.rollout import parameterized_model, rollout_loss
from qgzoo.training.experiment import Experiment


def heldout_rollout_error(experiment: Experiment, parameterization, test: ReferenceData,
                          stats: FieldStats, *, rollout_steps: int,
                          n_windows: int = 16, scales: str = "resolved") -> float:
    """Mean normalised state MSE over T = ``rollout_steps`` samples from held-out states.

    Windows start at evenly spaced samples of every test run; the error of each
    layer is divided by that layer's variance of q in the training data; ``scales``
    as in ``StateMSESpec``.
    """
    per_run = max(1, n_windows // test.n_runs)
    starts = np.linspace(0, test.n_samples - rollout_steps - 1, per_run).astype(int)
    runs = np.repeat(np.arange(test.n_runs), per_run)
    windows = test.windows("q", runs, np.tile(starts, test.n_runs), rollout_steps + 1)
    lores = experiment.reference.lores_model()
    model = parameterized_model(lores, parameterization, experiment.stepper.build())
    score = StateMSESpec(scales=scales).build(stats, lores).state_term

    @jax.jit
    def errors(windows):
        return jax.vmap(lambda w: rollout_loss(
            model, w, steps_per_sample=experiment.steps_per_sample,
            chunk=experiment.training.checkpoint_chunk, state_term=score))(windows)

    return float(jnp.mean(errors(jnp.asarray(windows, lores.filtr.dtype))))
