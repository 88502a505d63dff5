"""The differentiable low-resolution run of a parameterized model.

The time loop is a scan over chunks of samples whose body is rematerialised
(``jax.checkpoint``): backpropagation stores one state per chunk and
recomputes the inside of one chunk at a time, so memory grows with T / chunk
instead of T. The loss is accumulated inside the scan, so the trajectory is
never stored either (unless a loss scores the window's states pooled). The
samples of a window may weigh differently (``time_decay``), the gradient may be
cut every K samples (``truncate_every``, truncated backpropagation through time)
or the first samples run without gradient and go unscored (``unscored``, the
pushforward trick), and an ensemble of runs with their own noise may be scored
together (``keys``).
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
    model = ParameterizedModel(lores, param_func=parameterization,
                               init_param_aux_func=parameterization.init_aux)
    if hasattr(stepper, "stepped_model"):
        return stepper.stepped_model(model)
    return SteppedModel(model, stepper)


def initial_state(model: SteppedModel, q: jax.Array, key: jax.Array | None = None):
    """A fresh stepper state of ``model`` holding the real field q (nz, ny, nx); ``key``
    (a raw uint32 PRNG key, default ``PRNGKey(0)``) seeds a stochastic closure's noise."""
    key = jax.random.PRNGKey(0) if key is None else key
    inner = model.model.initialize_param_state(qg.state_from_q(model.model.model, q), key)
    return model.initialize_stepper_state(inner)


def noise_keys(n_runs: int, seed: int = 0) -> jax.Array:
    """(n_runs, 2) raw PRNG keys, one per run of an ensemble: run i's noise depends on
    ``seed`` and i alone, however the runs are split over devices and processes."""
    return jax.random.split(jax.random.PRNGKey(seed), n_runs)


def chunk_size(n_samples: int, preferred: int) -> int:
    """The largest divisor of ``n_samples`` not above ``preferred``."""
    return max(d for d in range(1, min(preferred, n_samples) + 1) if n_samples % d == 0)


def rollout_loss(model: SteppedModel, q_ref: jax.Array, *, steps_per_sample: int,
                 chunk: int, state_term: Callable, time_decay: float = 1.0,
                 truncate_every: int = 0, unscored: int = 0,
                 keys: jax.Array | None = None,
                 window_term: Callable | None = None) -> jax.Array:
    """Weighted mean of ``state_term(q, q_ref[t])`` over t = 1..T of a run from ``q_ref[0]``.

    ``q_ref`` is (T+1, nz, ny, nx); samples are ``steps_per_sample`` model steps apart.
    Sample t weighs ``time_decay ** (t - 1)`` (1: the plain mean; below 1 the early
    samples count most). ``truncate_every = K > 0`` truncates backpropagation: the
    gradient does not flow through the state before samples K, 2K, ..., so each term's
    gradient reaches back at most K samples. ``unscored = P`` is the pushforward trick
    (Brandstetter et al. 2022): the run reaches sample P with no gradient and is scored
    on samples P + 1..T only, from a state the model made itself, with weights
    ``time_decay ** (t - P - 1)``. ``keys`` seed a stochastic closure: one raw
    PRNG key (2,) for one run, or (M, 2) for an ensemble of M runs from ``q_ref[0]``,
    stepped together, whose states (M, nz, ny, nx) ``state_term`` then scores at once.
    ``window_term(q, q_ref)``, if given, scores the scored states pooled, (K, nz, ny, nx)
    against the reference's (the window's T - P states, times M for an ensemble, the
    reference's repeated), and is added to the mean: the rollout then keeps the states.
    """
    if not 0 <= unscored < q_ref.shape[0] - 1:
        raise ValueError(f"unscored ({unscored}) must leave a sample of the "
                         f"{q_ref.shape[0] - 1} to score")
    n = q_ref.shape[0] - 1 - unscored
    size = chunk_size(n, chunk)
    ensemble = keys is not None and keys.ndim == 2
    step = jax.vmap(model.step_model) if ensemble else model.step_model

    def advance(state, steps):
        return jax.lax.fori_loop(0, steps, lambda _, s: step(s), state)

    def sample_step(carry, index):
        state, total = carry
        state = advance(state, steps_per_sample)
        q_target = jax.lax.dynamic_index_in_dim(q_ref, index, keepdims=False)
        term = state_term(state.state.model_state.q, q_target)
        if time_decay != 1.0:
            term = term * time_decay ** (index - 1 - unscored).astype(term.dtype)
        kept = state.state.model_state.q if window_term is not None else None
        if truncate_every:
            cut = index % truncate_every == 0
            state = jax.tree.map(lambda x: jnp.where(cut, jax.lax.stop_gradient(x), x), state)
        return (state, total + term.astype(total.dtype)), kept

    def chunk_step(carry, first):
        # Targets are read by index inside the chunk: slicing them out beforehand
        # would copy the whole window and keep the copy alive for the backward pass.
        return jax.lax.scan(sample_step, carry, first + jnp.arange(size))

    if n > size:  # with one chunk there is nothing to save: skip the recomputation
        chunk_step = jax.checkpoint(chunk_step)
    if ensemble:
        start = jax.vmap(lambda key: initial_state(model, q_ref[0], key))(keys)
    else:
        start = initial_state(model, q_ref[0], keys)
    if unscored:
        start = jax.lax.stop_gradient(advance(start, unscored * steps_per_sample))
    carry = (start, jnp.zeros((), q_ref.dtype))
    (_, total), kept = jax.lax.scan(chunk_step, carry,
                                    1 + unscored + size * jnp.arange(n // size))
    loss = total / sum(time_decay ** t for t in range(n))
    if window_term is None:
        return loss
    kept = kept.reshape(n, *kept.shape[2:])  # (T - P, [M,] nz, ny, nx)
    reference = q_ref[1 + unscored:]
    if ensemble:
        kept = kept.reshape(-1, *kept.shape[2:])
        reference = jnp.repeat(reference, keys.shape[0], axis=0)
    return loss + window_term(kept, reference)
