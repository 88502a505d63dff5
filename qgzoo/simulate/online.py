"""Online runs: long low-resolution runs of a parameterized model, for the online metrics.

``run_online`` advances an ensemble of low-resolution runs (vmapped) and keeps
only what the comparison scores: the last few snapshots of q, a per-interval
kinetic-energy series for plots, and the step at which each run blew up, if it
did. ``cost_ms_per_step`` times one run of the same model
(``step_timer`` for timings interleaved across models).

A run blows up when its q stops being finite (checked after every step) or its
kinetic energy exceeds ``max_ke_ratio`` times its initial value (checked at the
end of every snapshot interval, where the energy is computed anyway). From then
on its state is frozen at the last state that passed the checks, and everything
it reports afterwards is NaN: a blown-up run never raises and never feeds NaNs
into the others. A stochastic closure's run i draws its noise from ``noise_keys``
(seed 0 and i), so a comparison is reproducible.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.core import devices
from qgzoo.physics.qg import kinetic_energy
from qgzoo.simulate.loop import StepLoop
from qgzoo.simulate.rollout import initial_state, noise_keys, parameterized_model

#: Default blow-up threshold: kinetic energy this many times its initial value.
MAX_KE_RATIO = 1e3


@dataclasses.dataclass(frozen=True)
class OnlineRun:
    """What an ensemble of online runs leaves behind (numpy arrays on the host).

    Steps count low-resolution model steps from the initial state (step 0).
    Entries of a run at or after its ``blowup_step`` are NaN.
    """

    snapshots: np.ndarray
    """q (runs, n_snapshots, nz, ny, nx) in 1/s at ``snapshot_steps``."""
    snapshot_steps: np.ndarray
    """(n_snapshots,) step of each snapshot, the ends of the last snapshot intervals."""
    ke: np.ndarray
    """(runs, n_intervals, nz) mean eddy kinetic energy u^2 + v^2 per layer, m^2/s^2
    (the definition of the reference store's ``hires/ke``), at ``ke_steps``."""
    ke_steps: np.ndarray
    """(n_intervals,) step at the end of each snapshot interval."""
    blowup_step: np.ndarray
    """(runs,) first step whose state failed a check (0: q0 itself), -1 if stable."""
    wall_seconds: float
    """Time of the compiled run, seconds (compilation excluded)."""
    compile_seconds: float
    """Time to trace and compile the run, seconds."""

    @property
    def stable(self) -> np.ndarray:
        """(runs,) True for the runs that never blew up."""
        return self.blowup_step < 0


def checked_step(model, carry, step_number):
    """One step of one run, ``carry = (state, blowup step)``, frozen once it blew up.

    If the new q is not finite, the run's blow-up step becomes ``step_number`` (the
    step being taken) and it keeps its last finite state from then on.
    """
    state, blowup = carry
    new = model.step_model(state)
    failed = (blowup < 0) & ~jnp.all(jnp.isfinite(new.state.model_state.qh))
    blowup = jnp.where(failed, step_number, blowup).astype(jnp.int32)
    frozen = blowup >= 0
    return jax.tree.map(lambda old, fresh: jnp.where(frozen, old, fresh), state, new), blowup


def initial_carry(model, q0, keys=None):
    """``(states, blowup steps)`` of runs from q0 (runs, nz, ny, nx), as ``checked_step``
    takes them: a run whose q0 is not finite has blown up at step 0. ``keys`` (runs, 2)
    seed a stochastic closure's noise (default ``noise_keys(runs)``)."""
    blowup = jnp.where(jnp.all(jnp.isfinite(q0), axis=(1, 2, 3)), -1, 0).astype(jnp.int32)
    keys = noise_keys(q0.shape[0]) if keys is None else keys
    return jax.vmap(lambda q, key: initial_state(model, q, key))(q0, keys), blowup


def run_online(lores_model, parameterization, stepper, q0, *, n_steps: int,
               snapshot_every: int, n_snapshots: int,
               max_ke_ratio: float | None = MAX_KE_RATIO) -> OnlineRun:
    """Run ``lores_model`` with ``parameterization`` from each initial q in ``q0``.

    ``q0`` is (runs, nz, ny, nx) in 1/s; the runs advance together (vmapped) for
    ``n_steps`` steps of ``stepper`` (a pyqg-jax stepper, dt in seconds), in
    intervals of ``snapshot_every`` steps (``StepLoop``). The q at the ends of the
    last ``n_snapshots`` intervals and the kinetic energy at the end of every
    interval are kept. ``max_ke_ratio`` (dimensionless, None to switch it off) is
    the blow-up threshold on the total kinetic energy relative to that of q0; see
    the module's docstring for what happens to a run that blows up. Each process
    steps its own runs (``devices.process_runs``), split over its devices, and
    every process returns them all.
    """
    if snapshot_every < 1 or n_steps < snapshot_every or n_steps % snapshot_every:
        raise ValueError(f"n_steps ({n_steps}) must be a positive multiple of "
                         f"snapshot_every ({snapshot_every})")
    n_intervals = n_steps // snapshot_every
    if not 0 <= n_snapshots <= n_intervals:
        raise ValueError(f"n_snapshots ({n_snapshots}) must be between 0 and the number "
                         f"of snapshot intervals ({n_intervals})")
    if max_ke_ratio is not None and not max_ke_ratio > 0:
        raise ValueError(f"max_ke_ratio must be positive or None, got {max_ke_ratio}")
    q0 = jnp.asarray(q0, lores_model.filtr.dtype)
    if q0.ndim != 4:
        raise ValueError(f"q0 must be (runs, nz, ny, nx), got shape {q0.shape}")
    n_runs = q0.shape[0]
    runs = devices.process_runs(n_runs)
    q0, keys = q0[runs.start:runs.stop], noise_keys(n_runs)[runs.start:runs.stop]
    mesh = devices.runs_mesh(len(runs))
    arrays, static = eqx.partition((lores_model, parameterization, stepper), eqx.is_array)

    def build(arrays):
        lores, closure, stepper_ = eqx.combine(arrays, static)
        return lores, parameterized_model(lores, closure, stepper_)

    def step(arrays, carry, number):
        return jax.vmap(lambda c: checked_step(build(arrays)[1], c, number))(carry)

    @jax.jit
    def start(arrays, q0, keys):
        lores, model = build(arrays)
        ke0 = jnp.sum(jax.vmap(lambda q: kinetic_energy(lores, q))(q0), axis=-1)
        limit = jnp.full_like(ke0, jnp.inf) if max_ke_ratio is None else max_ke_ratio * ke0
        return initial_carry(model, q0, keys), limit

    def end_of_interval(arrays, carry, end, limit):
        state, blowup = carry
        q = state.state.model_state.q
        ke = jax.vmap(lambda x: kinetic_energy(build(arrays)[0], x))(q)
        blowup = jnp.where((blowup < 0) & ~(jnp.sum(ke, axis=-1) <= limit), end,
                           blowup).astype(jnp.int32)
        alive = (blowup < 0)[:, None]
        return (state, blowup), jnp.where(alive, ke, jnp.nan), \
            jnp.where(alive[..., None, None], q, jnp.nan)

    begin = time.perf_counter()
    carry, limit = devices.put_runs(start(arrays, q0, keys), mesh)
    loop = StepLoop(step, arrays, carry, mesh=mesh)
    end_of_interval = jax.jit(end_of_interval).lower(arrays, carry, jnp.int32(0), limit).compile()
    compile_seconds = time.perf_counter() - begin
    ke, snapshots = [], []
    begin = time.perf_counter()
    for interval in range(n_intervals):
        first = interval * snapshot_every
        carry = loop(carry, first, snapshot_every)
        carry, energy, q = end_of_interval(arrays, carry, jnp.int32(first + snapshot_every),
                                           limit)
        ke.append(energy)
        if interval >= n_intervals - n_snapshots:
            snapshots.append(q)
    ke = np.stack(jax.device_get(ke), axis=1)
    snapshots = (np.stack(jax.device_get(snapshots), axis=1) if snapshots else
                 np.zeros((q0.shape[0], 0, *q0.shape[1:]), q0.dtype))
    wall_seconds = time.perf_counter() - begin
    ends = snapshot_every * np.arange(1, n_intervals + 1)
    ke, snapshots, blowup = (devices.gather_runs(np.asarray(x), n_runs)
                             for x in (ke, snapshots, np.asarray(carry[1], np.int64)))
    return OnlineRun(snapshots=snapshots, snapshot_steps=ends[n_intervals - n_snapshots:],
                     ke=ke, ke_steps=ends, blowup_step=blowup,
                     wall_seconds=wall_seconds, compile_seconds=compile_seconds)


def step_timer(lores_model, parameterization, stepper, q0, n_steps: int):
    """A compiled, warmed-up loop of ``n_steps`` steps from q0 (nz, ny, nx), 1/s.

    Returns a function of no arguments that runs the loop once and returns its
    wall time in seconds (``block_until_ready``).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    q0 = jnp.asarray(q0, lores_model.filtr.dtype)
    if q0.ndim != 3:
        raise ValueError(f"q0 must be (nz, ny, nx), got shape {q0.shape}")
    arrays, static = eqx.partition((lores_model, parameterization, stepper), eqx.is_array)

    def step(arrays, state, _):
        return parameterized_model(*eqx.combine(arrays, static)).step_model(state)

    state = jax.jit(lambda arrays, q0: initial_state(
        parameterized_model(*eqx.combine(arrays, static)), q0))(arrays, q0)
    loop = StepLoop(step, arrays, state)
    jax.block_until_ready(loop(state, 0, n_steps))

    def timed() -> float:
        start = time.perf_counter()
        jax.block_until_ready(loop(state, 0, n_steps))
        return time.perf_counter() - start
    return timed


def cost_ms_per_step(lores_model, parameterization, stepper, q0, n_steps: int, *,
                     repeats: int = 5) -> float:
    """Milliseconds per low-resolution step of the parameterized model, for one run.

    ``q0`` (nz, ny, nx) in 1/s is the initial state; the compiled loop of
    ``n_steps`` steps (``step_timer``) is timed ``repeats`` times and the median
    is returned. Compare costs measured in the same process, as ratios; absolute
    values depend on the machine's load.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    timer = step_timer(lores_model, parameterization, stepper, q0, n_steps)
    return 1e3 * statistics.median(timer() for _ in range(repeats)) / n_steps
