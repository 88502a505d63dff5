"""Conformance checks of steppers."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.components.networks import NoClosure
from qgzoo.physics import qg
from qgzoo.simulate.rollout import initial_state, parameterized_model
from qgzoo.testing.assertions import assert_close, assert_field, checking, require
from qgzoo.testing.inputs import (
    BATCH, PRECISIONS, Q_AMPLITUDE, random_batch, real_dtype, run_steps, small_setup)
from qgzoo.testing.spec import check_spec


def check_stepper(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
                  precisions=PRECISIONS, config: str = "eddy", steps: int = 3,
                  consistency: float = 0.25) -> None:
    """Check a stepper spec: ``build()`` steps the low-resolution model (through
    ``qgzoo.parameterized_model``) in both precisions; time advances by
    ``dt`` per step; q stays finite in the model's dtype; the first step agrees
    with the model's tendency, |(q1 - q0)/dt - dq/dt| <= ``consistency`` |dq/dt|
    at the scales the model's filter leaves alone; jit, vmap and gradients through
    ``steps`` steps work."""
    check_spec(spec, registered=registered)
    for precision in precisions:
        _, lores, _ = small_setup(config, hires_nx, lores_nx, precision)
        _check_stepper(spec, lores, precision, steps, consistency)


def _trajectory(model, q, steps: int):
    """q and t after each of ``steps`` steps: (steps, nz, ny, nx) and (steps,)."""
    def step(state, _):
        state = model.step_model(state)
        return state, (state.state.model_state.q, state.t)
    return jax.lax.scan(step, initial_state(model, q), length=steps)[1]


_trajectory_batch_jit = eqx.filter_jit(jax.vmap(_trajectory, in_axes=(None, 0, None)))


_tendency_jit = eqx.filter_jit(qg.tendency)


def _check_stepper(spec, lores, precision, steps, consistency):
    at = f" ({precision} precision)"
    dtype = real_dtype(lores)
    shape = (lores.nz, lores.ny, lores.nx)
    with checking(spec, "build" + at):
        model = parameterized_model(lores, NoClosure(), spec.build())
    batch = random_batch(lores, jax.random.key(11), BATCH)
    with checking(spec, f"{steps} steps under jit and vmap over a batch" + at):
        q, t = _trajectory_batch_jit(model, batch, steps)
        assert_field(q, (BATCH, steps, *shape), dtype, f"q after each of {steps} steps")
        assert_close(t[0], spec.dt * np.arange(1, steps + 1), 1e-5,
                     f"time after each step of dt = {spec.dt} s")
    with checking(spec, "consistent with the model's tendency" + at):
        q0 = batch[0].astype(np.float64)
        q1 = q[0, 0].astype(np.float64)
        resolved = lores.filtr >= 1
        rate = jnp.fft.rfftn((q1 - q0) / spec.dt, axes=(-2, -1)) * resolved
        tendency = _tendency_jit(lores, batch[0]).astype(np.float64)
        tendency = jnp.fft.rfftn(tendency, axes=(-2, -1)) * resolved
        error = float(jnp.linalg.norm(rate - tendency) / jnp.linalg.norm(tendency))
        require(error <= consistency, f"(q1 - q0) / dt differs from dq/dt by {error:.3g} "
                f"(relative, resolved scales), more than {consistency}")
    with checking(spec, f"differentiable through {steps} steps" + at):
        weights = jax.random.normal(jax.random.key(12), shape, dtype)

        def scalar(q):
            return jnp.sum(run_steps(model, q, steps).state.model_state.q / Q_AMPLITUDE[0] * weights)

        grad = eqx.filter_jit(jax.grad(scalar))(batch[0])
        assert_field(grad, shape, dtype, "the gradient of the final q with respect to the initial q")
        require(bool(jnp.any(grad != 0)), "the gradient with respect to the initial q is zero")
