"""Long runs from a model's own initial condition, with time-averaged budget spectra.

This is how Ross et al. (2023) run every model they score, high and low
resolution alike: from pyqg's random initial condition for years, with the
budget spectra (``qgzoo.physics.budget``) averaged in time over the second half
and q kept at a fixed spacing. ``run_long`` does it for an ensemble (vmapped):
the run advances in blocks of ``snapshot_every`` steps (``StepLoop``), so
progress can be shown and nothing of the trajectory is stored but the sums and
the snapshots.

A run blows up when its q stops being finite (checked after every step): from
then on its state is frozen, and its averages and later snapshots are NaN. A
stochastic closure's run i draws its noise from ``noise_keys`` (seed 0 and i), and
its budget terms take the forcing with the noise it holds at each averaged state.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from qgzoo.components.networks import NoClosure
from qgzoo.core import devices, files
from qgzoo.physics import budget
from qgzoo.physics.qg import kinetic_energy
from qgzoo.simulate.loop import StepLoop
from qgzoo.simulate.online import checked_step, initial_carry
from qgzoo.simulate.rollout import noise_keys, parameterized_model


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
             average_every: int, snapshot_every: int, progress: str | None = None,
             checkpoint: pathlib.Path | None = None) -> LongRun:
    """Run ``lores_model`` (any pyqg-jax model) with ``parameterization`` from each q in ``q0``.

    ``q0`` is (runs, nz, ny, nx) in 1/s (``random_initial_q`` for Ross et al.'s
    protocol). The runs advance together for ``n_steps`` steps of ``stepper`` (dt
    in seconds). From step ``average_from`` on, the budget spectra of the state
    after every ``average_every``-th step enter the time mean, with the
    parameterization's forcing in the ``paramspec`` terms; q is kept at every
    multiple of ``snapshot_every`` from ``average_from`` on. ``progress`` is a label
    for a progress bar (None: none).

    With a ``checkpoint`` path the run keeps its state there after every block and,
    started again with the same arguments, goes on from the last block kept; the
    file is removed when the run is done. The path must belong to this model and
    parameterization alone (callers name it by their content); a file from other
    arguments is replaced. Each process steps its own runs (``devices.process_runs``),
    split over its devices, with a checkpoint of its own, and every process returns them
    all.
    """
    if not 0 <= average_from < n_steps:
        raise ValueError(f"average_from ({average_from}) must be in [0, n_steps = {n_steps})")
    if average_every < 1 or snapshot_every < 1:
        raise ValueError(f"average_every ({average_every}) and snapshot_every "
                         f"({snapshot_every}) must be positive")
    q0 = jnp.asarray(q0, lores_model.filtr.dtype)
    if q0.ndim != 4:
        raise ValueError(f"q0 must be (runs, nz, ny, nx), got shape {q0.shape}")
    n_runs = q0.shape[0]
    runs = devices.process_runs(n_runs)
    q0 = q0[runs.start:runs.stop]
    mesh = devices.runs_mesh(len(runs))
    if checkpoint is not None and devices.process_count() > 1:
        # fewer runs than processes: every process steps them all, the main one keeps them
        shared = len(runs) == n_runs and not devices.is_main()
        checkpoint = None if shared else checkpoint.with_name(
            f"{checkpoint.stem}.runs-{runs.start}-{runs.stop}{checkpoint.suffix}")
    arrays, static = eqx.partition((lores_model, parameterization, stepper), eqx.is_array)
    with_forcing = not isinstance(parameterization, NoClosure)

    def build(arrays):
        lores, closure, stepper_ = eqx.combine(arrays, static)
        return lores, closure, parameterized_model(lores, closure, stepper_)

    def spectra(lores, closure, q, aux=None):
        forcing = None if closure is None else closure.q_forcing_at(lores, q, aux)
        return budget.budget_spectra(lores, q, forcing)

    def step(arrays, carry, number):
        model = build(arrays)[2]
        return jax.vmap(lambda c: checked_step(model, c, number))(carry)

    @jax.jit
    def accumulate(arrays, carry, sums):
        lores, closure, _ = build(arrays)
        closure = closure if with_forcing else None
        inner = carry[0].state  # the closure's forcing with the noise it holds now, if any
        spectra_now = jax.vmap(lambda q, aux: spectra(lores, closure, q, aux))(
            inner.model_state.q, inner.param_aux.value)
        return jax.tree.map(jnp.add, sums, spectra_now)


    @jax.jit
    def energy_and_q(arrays, carry):
        lores = build(arrays)[0]
        q = carry[0].state.model_state.q
        return jax.vmap(lambda x: kinetic_energy(lores, x))(q), q

    keys = noise_keys(n_runs)[runs.start:runs.stop]
    carry = jax.jit(lambda arrays, q0, keys: initial_carry(build(arrays)[2], q0, keys))(
        arrays, q0, keys)
    sums = jax.tree.map(lambda x: jnp.zeros((q0.shape[0], *x.shape), x.dtype),
                        jax.eval_shape(lambda q: spectra(build(arrays)[0], None, q), q0[0]))
    carry, sums = devices.put_runs((carry, sums), mesh)
    loop = StepLoop(step, arrays, carry, mesh=mesh)
    ends = list(range(snapshot_every, n_steps, snapshot_every)) + [n_steps]
    ke, snapshots, snapshot_steps = [], [], []
    now, earlier_seconds = 0, 0.0
    arguments = np.array([q0.shape[0], n_steps, average_from, average_every, snapshot_every])
    fingerprint = np.concatenate([arguments, np.asarray(q0, np.float64).ravel()[:64]])
    if checkpoint is not None and checkpoint.exists():
        kept = files.read_cache(checkpoint, lambda path: _load_progress(
            path, fingerprint, carry, sums))
        if kept is not None:
            carry, sums, ke, snapshots, snapshot_steps, now, earlier_seconds = kept
            carry, sums = devices.put_runs((carry, sums), mesh)
    start_time = time.perf_counter()
    remaining = [end for end in ends if end > now]
    for end in tqdm(remaining, desc=progress, unit="block",
                    disable=progress is None or not devices.is_main(),
                    initial=len(ends) - len(remaining), total=len(ends)):
        # the states averaged: every multiple of average_every after average_from
        first_averaged = average_every * (max(now, average_from) // average_every + 1)
        for averaged in range(first_averaged, end + 1, average_every):
            carry = loop(carry, now, averaged - now)
            sums = accumulate(arrays, carry, sums)
            now = averaged
        carry = loop(carry, now, end - now)
        now = end
        energy, q = energy_and_q(arrays, carry)
        ke.append(np.asarray(energy))
        if end >= average_from and end % snapshot_every == 0:
            snapshots.append(np.asarray(q))
            snapshot_steps.append(end)
        if checkpoint is not None and end < n_steps:
            _save_progress(checkpoint, fingerprint, carry, sums, ke, snapshots, snapshot_steps,
                           now, earlier_seconds + time.perf_counter() - start_time)
    blowup = devices.gather_runs(np.asarray(carry[1], np.int64), n_runs)
    sums = {k: devices.gather_runs(np.asarray(v), n_runs) for k, v in sums.items()}
    n_averaged = n_steps // average_every - average_from // average_every
    alive = (blowup < 0).astype(float)
    alive[alive == 0] = np.nan
    means = {k: np.asarray(v) / n_averaged * alive.reshape(-1, *(1,) * (v.ndim - 1))
             for k, v in sums.items()}
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return LongRun(
        budget=means, n_averaged=n_averaged,
        snapshots=_after_blowup(devices.gather_runs(
            np.stack(snapshots, axis=1) if snapshots else
            np.zeros((q0.shape[0], 0, *q0.shape[1:])), n_runs),
            np.array(snapshot_steps), blowup),
        snapshot_steps=np.array(snapshot_steps, np.int64),
        ke=_after_blowup(devices.gather_runs(np.stack(ke, axis=1), n_runs), np.array(ends),
                         blowup),
        ke_steps=np.array(ends, np.int64), blowup_step=blowup,
        wall_seconds=earlier_seconds + time.perf_counter() - start_time)


def _save_progress(path, fingerprint, carry, sums, ke, snapshots, snapshot_steps, now, seconds):
    """Everything ``run_long`` needs to go on after step ``now``, in one npz."""
    leaves = jax.tree.leaves((carry, sums))
    arrays = {f"leaf/{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays |= {f"ke/{i}": e for i, e in enumerate(ke)}
    arrays |= {f"snapshot/{i}": q for i, q in enumerate(snapshots)}
    arrays |= dict(fingerprint=fingerprint, snapshot_steps=np.array(snapshot_steps, np.int64),
                   now=np.array(now), seconds=np.array(seconds))
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def _load_progress(path, fingerprint, carry, sums):
    """``_save_progress``'s contents, with the carry and sums shaped like ``carry`` and
    ``sums``; None if the file is from a run with other arguments."""
    with np.load(path) as a:
        if a["fingerprint"].shape != fingerprint.shape or \
                not np.array_equal(a["fingerprint"], fingerprint):
            return None
        leaves, treedef = jax.tree.flatten((carry, sums))
        kept = [a[f"leaf/{i}"] for i in range(len(leaves))]
        if any(k.shape != leaf.shape or k.dtype != leaf.dtype for k, leaf in zip(kept, leaves)):
            return None
        carry, sums = jax.tree.unflatten(treedef, [jnp.asarray(k) for k in kept])
        count = lambda prefix: sum(name.startswith(prefix) for name in a.files)
        ke = [a[f"ke/{i}"] for i in range(count("ke/"))]
        snapshots = [a[f"snapshot/{i}"] for i in range(count("snapshot/"))]
        return (carry, sums, ke, snapshots, list(a["snapshot_steps"]), int(a["now"]),
                float(a["seconds"]))


def _after_blowup(values: np.ndarray, steps: np.ndarray, blowup: np.ndarray) -> np.ndarray:
    """``values`` (runs, times, ...) with NaN at the times at or after each run's blow-up."""
    values = np.array(values, dtype=float)
    late = (blowup[:, None] >= 0) & (steps[None, :] >= blowup[:, None])
    values[late] = np.nan
    return values
