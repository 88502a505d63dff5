"""What one online training update takes, made without a store: shared by the
benchmarks that time updates (``host_devices.py``, ``ensemble_update.py``)."""

from __future__ import annotations


def update_inputs(experiment, batch: int, rollout_steps: int):
    """``(setup, optimizer, params, static, opt_state, windows)`` of ``experiment``:
    ``batch`` windows of ``rollout_steps`` + 1 samples of a low-resolution state from
    its own initial condition (the cost of an update does not depend on where the
    states come from), with stats of realistic size."""
    # JAX is imported here, not at the top: host_devices.py configures the devices of
    # its worker processes before JAX starts.
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from qgzoo.components.networks import trainable
    from qgzoo.core.fields import FIELDS, FieldStats
    from qgzoo.simulate.long_run import random_initial_q
    from qgzoo.training.trainer import Setup

    lores = experiment.reference.lores_model()
    q0 = random_initial_q(lores, jax.random.split(jax.random.key(0), batch))
    windows = jnp.stack([q0 * (1 + 0.01 * t) for t in range(rollout_steps + 1)], axis=1)
    stats = FieldStats({name: jnp.full(2, 1e-5 if name == "q" else 1e-11) for name in FIELDS})
    setup = Setup.from_experiment(experiment, stats)
    optimizer = experiment.optimizer.transformation(experiment.training.steps)
    params, static = eqx.partition(setup.parameterization, trainable(setup.parameterization))
    return setup, optimizer, params, static, optimizer.init(params), windows
