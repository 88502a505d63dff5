"""Long runs from a model's own initial condition, with time-averaged budget spectra.

This is how Ross et al. (2023) run every model they score, high and low
resolution alike: from pyqg's random initial condition for years, with the
budget spectra (``qgzoo.physics.budget``) averaged in time over the second half
and q kept at a fixed spacing. ``run_long`` does it for an ensemble (vmapped):
the run advances in blocks of ``snapshot_every`` steps, each block a compiled
loop, so progress can be shown and nothing of the trajectory is stored but the
sums and the snapshots.

A run blows up when its q stops being finite (checked after every step): from
then on its state is frozen, and its averages and later snapshots are NaN.
"""

from __future__ import annotations

import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from qgzoo.components.networks import NoClosure
from qgzoo.physics import budget
from qgzoo.physics.qg import kinetic_energy
from qgzoo.simulate.online import checked_step
from qgzoo.simulate.rollout import initial_state, parameterized_model


@dataclasses.dataclass(frozen=True)
class LongRun:
    """What an ensemble of long runs leaves behind (numpy arrays on the host).

    Steps count model steps from the initial condition (step 0).
    """

    budget: dict[str, np.ndarray]
    """pyqg's diagnostic name -> (runs, ...) time mean of ``budget.budget_spectra``
    over the averaging period, per run (NaN for a run that blew up)."""
    n_averaged: int
    """How many states entered each run's time mean."""
    snapshots: np.ndarray
    """q (runs, n, nz, ny, nx) in 1/s at ``snapshot_steps``."""
    snapshot_steps: np.ndarray
    """(n,) steps of the snapshots: the multiples of ``snapshot_every`` in the averaging
    period."""
    ke: np.ndarray
    """(runs, blocks, nz) mean kinetic energy u^2 + v^2 per layer, m^2/s^2, at ``ke_steps``."""
    ke_steps: np.ndarray
    """(blocks,) the step at the end of each block, from the first to ``n_steps``."""
    blowup_step: np.ndarray
    """(runs,) first step whose q was not finite, -1 if stable."""
    wall_seconds: float

    @property
    def stable(self) -> np.ndarray:
        """(runs,) True for the runs that never blew up."""
        return self.blowup_step < 0


def random_initial_q(model, keys) -> jax.Array:
    """q (runs, nz, ny, nx) of ``model``'s own random initial condition (pyqg's), one per key."""
    return jax.vmap(lambda key: model.create_initial_state(key).q)(keys)


def run_long(lores_model, parameterization, stepper, q0, *, n_steps: int, average_from: int,
             average_every: int, snapshot_every: int, progress: str | None = None) -> LongRun:
    """Run ``lores_model`` (any pyqg-jax model) with ``parameterization`` from each q in ``q0``.

    ``q0`` is (runs, nz, ny, nx) in 1/s (``random_initial_q`` for Ross et al.'s
    protocol). The runs advance together for ``n_steps`` steps of ``stepper`` (dt
    in seconds). From step ``average_from`` on, the budget spectra of the state
    after every ``average_every``-th step enter the time mean, with the
    parameterization's forcing in the ``paramspec`` terms; q is kept at every
    multiple of ``snapshot_every`` from ``average_from`` on. ``progress`` is a label
    for a progress bar (None: none).
    """
    if not 0 <= average_from < n_steps:
        raise ValueError(f"average_from ({average_from}) must be in [0, n_steps = {n_steps})")
    if average_every < 1 or snapshot_every < 1:
        raise ValueError(f"average_every ({average_every}) and snapshot_every "
                         f"({snapshot_every}) must be positive")
    q0 = jnp.asarray(q0, lores_model.filtr.dtype)
    if q0.ndim != 4:
        raise ValueError(f"q0 must be (runs, nz, ny, nx), got shape {q0.shape}")
    arrays, static = eqx.partition((lores_model, parameterization, stepper), eqx.is_array)
    with_forcing = not isinstance(parameterization, NoClosure)

    def build(arrays):
        lores, closure, stepper_ = eqx.combine(arrays, static)
        return lores, closure, parameterized_model(lores, closure, stepper_)

    def spectra(lores, closure, q):
        forcing = None if closure is None else closure.q_forcing_at(lores, q)
        return budget.budget_spectra(lores, q, forcing)

    def step(model, first, offset, carry):
        return jax.vmap(lambda c: checked_step(model, c, first + offset + 1))(carry)

    @jax.jit
    def advance(arrays, carry, first, n):
        _, _, model = build(arrays)
        return jax.lax.fori_loop(0, n, lambda i, c: step(model, first, i, c), carry)

    @jax.jit
    def advance_averaging(arrays, carry, sums, first, n):
        lores, closure, model = build(arrays)
        closure = closure if with_forcing else None

        def body(i, c):
            carry, sums = c
            carry = step(model, first, i, carry)
            add = lambda s: jax.tree.map(jnp.add, s, jax.vmap(
                lambda q: spectra(lores, closure, q))(carry[0].state.model_state.q))
            sums = jax.lax.cond((first + i + 1) % average_every == 0, add, lambda s: s, sums)
            return carry, sums
        return jax.lax.fori_loop(0, n, body, (carry, sums))

    @jax.jit
    def energy_and_q(arrays, carry):
        lores, _, _ = build(arrays)
        q = carry[0].state.model_state.q
        return jax.vmap(lambda x: kinetic_energy(lores, x))(q), q

    lores, _, model = build(arrays)
    carry = (jax.vmap(lambda q: initial_state(model, q))(q0),
             jnp.where(jnp.all(jnp.isfinite(q0), axis=(1, 2, 3)), -1, 0).astype(jnp.int32))
    sums = jax.tree.map(lambda x: jnp.zeros((q0.shape[0], *x.shape), x.dtype),
                        jax.eval_shape(lambda q: spectra(lores, None, q), q0[0]))
    ends = list(range(snapshot_every, n_steps, snapshot_every)) + [n_steps]
    ke, snapshots, snapshot_steps = [], [], []
    start, begin = time.perf_counter(), 0
    for end in tqdm(ends, desc=progress, disable=progress is None, unit="block"):
        split = min(max(average_from, begin), end)
        if split > begin:
            carry = advance(arrays, carry, begin, split - begin)
        if end > split:
            carry, sums = advance_averaging(arrays, carry, sums, split, end - split)
        energy, q = energy_and_q(arrays, carry)
        ke.append(np.asarray(energy))
        if end >= average_from and end % snapshot_every == 0:
            snapshots.append(np.asarray(q))
            snapshot_steps.append(end)
        begin = end
    blowup = np.asarray(carry[1], np.int64)
    n_averaged = n_steps // average_every - average_from // average_every
    alive = (blowup < 0).astype(float)
    alive[alive == 0] = np.nan
    means = {k: np.asarray(v) / n_averaged * alive.reshape(-1, *(1,) * (v.ndim - 1))
             for k, v in sums.items()}
    return LongRun(
        budget=means, n_averaged=n_averaged,
        snapshots=_after_blowup(np.stack(snapshots, axis=1) if snapshots else
                                np.zeros((q0.shape[0], 0, *q0.shape[1:])),
                                np.array(snapshot_steps), blowup),
        snapshot_steps=np.array(snapshot_steps, np.int64),
        ke=_after_blowup(np.stack(ke, axis=1), np.array(ends), blowup),
        ke_steps=np.array(ends, np.int64), blowup_step=blowup,
        wall_seconds=time.perf_counter() - start)


def _after_blowup(values: np.ndarray, steps: np.ndarray, blowup: np.ndarray) -> np.ndarray:
    """``values`` (runs, times, ...) with NaN at the times at or after each run's blow-up."""
    values = np.array(values, dtype=float)
    late = (blowup[:, None] >= 0) & (steps[None, :] >= blowup[:, None])
    values[late] = np.nan
    return values
