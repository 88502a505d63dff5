"""The differentiable low-resolution run of a parameterized model.

The time loop is a scan over chunks of samples whose body is rematerialised
(``jax.checkpoint``): backpropagation stores one state per chunk and
recomputes the inside of one chunk at a time, so memory grows with T / chunk
instead of T. The loss is accumulated inside the scan, so the trajectory is
never stored either. The samples of a window may weigh differently (``time_decay``)
and the gradient may be cut every K samples (``truncate_every``, truncated
backpropagation through time).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from pyqg_jax.parameterizations import ParameterizedModel
from pyqg_jax.steppers import SteppedModel

from qgzoo.physics import qg


def parameterized_model(lores, parameterization, stepper) -> SteppedModel:
    """The low-resolution model with ``parameterization`` added, stepped by ``stepper``.

    ``stepper`` is a pyqg-jax stepper, or, for schemes that evaluate the model
    several times per step (Runge-Kutta), any object whose ``stepped_model(model)``
    returns something with ``SteppedModel``'s methods.
    """
    model = ParameterizedModel(lores, param_func=parameterization)
    if hasattr(stepper, "stepped_model"):
        return stepper.stepped_model(model)
    return SteppedModel(model, stepper)


def initial_state(model: SteppedModel, q: jax.Array):
    """A fresh stepper state of ``model`` holding the real field q (nz, ny, nx)."""
    inner = model.model.initialize_param_state(qg.state_from_q(model.model.model, q))
    return model.initialize_stepper_state(inner)


def chunk_size(n_samples: int, preferred: int) -> int:
    """The largest divisor of ``n_samples`` not above ``preferred``."""
    return max(d for d in range(1, min(preferred, n_samples) + 1) if n_samples % d == 0)


def _advance(model, state, steps):
    return jax.lax.fori_loop(0, steps, lambda _, s: model.step_model(s), state)


def rollout_loss(model: SteppedModel, q_ref: jax.Array, *, steps_per_sample: int,
                 chunk: int, state_term: Callable, time_decay: float = 1.0,
                 truncate_every: int = 0) -> jax.Array:
    """Weighted mean of ``state_term(q, q_ref[t])`` over t = 1..T of a run from ``q_ref[0]``.

    ``q_ref`` is (T+1, nz, ny, nx); samples are ``steps_per_sample`` model steps apart.
    Sample t weighs ``time_decay ** (t - 1)`` (1: the plain mean; below 1 the early
    samples count most). ``truncate_every = K > 0`` truncates backpropagation: the
    gradient does not flow through the state before samples K, 2K, ..., so each term's
    gradient reaches back at most K samples.
    """
    n = q_ref.shape[0] - 1
    size = chunk_size(n, chunk)

    def sample_step(carry, index):
        state, total = carry
        state = _advance(model, state, steps_per_sample)
        q_target = jax.lax.dynamic_index_in_dim(q_ref, index, keepdims=False)
        term = state_term(state.state.model_state.q, q_target)
        if time_decay != 1.0:
            term = term * time_decay ** (index - 1).astype(term.dtype)
        if truncate_every:
            cut = index % truncate_every == 0
            state = jax.tree.map(lambda x: jnp.where(cut, jax.lax.stop_gradient(x), x), state)
        return (state, total + term.astype(total.dtype)), None

    def chunk_step(carry, first):
        # Targets are read by index inside the chunk: slicing them out beforehand
        # would copy the whole window and keep the copy alive for the backward pass.
        return jax.lax.scan(sample_step, carry, first + jnp.arange(size))[0], None

    if n > size:  # with one chunk there is nothing to save: skip the recomputation
        chunk_step = jax.checkpoint(chunk_step)
    carry = (initial_state(model, q_ref[0]), jnp.zeros((), q_ref.dtype))
    (_, total), _ = jax.lax.scan(chunk_step, carry, 1 + size * jnp.arange(n // size))
    return total / sum(time_decay ** t for t in range(n))
