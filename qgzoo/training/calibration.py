"""Ensemble Kalman inversion (EKI): a closure's few constants calibrated, without
gradients, against the climate of the training data (``training.method = "eki"``).

The trainable arrays of the closure (for qgzoo-physical's constants, their
log-factors) are flattened into a vector u. An ensemble of J = ``eki.members``
vectors, drawn around the initial one with std ``eki.prior_std``, is moved
``training.steps`` times. Each iteration runs the low-resolution model with
every member's closure from the same coarsened training state (the first sample
of the first training run) for ``eki.run_days``, averages the observables of its
daily states over the last ``eki.average_days``, and applies the
perturbed-observation update of Iglesias, Law & Stuart (2013, Inverse Problems
29, 045001):

    u_j <- u_j + C_ug (C_gg + Gamma)^-1 (y + eta_j - G_j),   eta_j ~ N(0, Gamma),

with G_j member j's observables, y those of the training data, C_ug and C_gg
the ensemble's covariances. Gamma (diagonal) is the noise of a time mean over
``average_days``: the variance of the observables over blocks of
``eki.block_days`` of the training runs, times block_days / average_days. The
observables are logs of time means, per layer: the kinetic energy u^2 + v^2 in
``eki.bands`` log-spaced bands of wavenumber up to the resolved ``kmax``
(``qg.resolved_kmax``), the enstrophy zeta^2 and the variance of q. A
member whose run blows up is left out of the update and restarts from the
updated ensemble's mean. The result is the final ensemble's mean.
"""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from qgzoo.components.networks import trainable
from qgzoo.core.errors import UserError
from qgzoo.data.reference import ReferenceData
from qgzoo.physics import qg
from qgzoo.simulate.online import checked_step, initial_carry
from qgzoo.simulate.rollout import parameterized_model

DAY = 86400.0


def band_masks(model, bands: int) -> jax.Array:
    """(bands, ny, nx // 2 + 1) weights of the rfft coefficients in each of ``bands``
    log-spaced wavenumber bands from the smallest non-zero |k| to ``resolved_kmax``: the
    band's indicator times 2 where the coefficient stands for itself and its conjugate."""
    wavenumber = np.asarray(model.wv, np.float64)
    edges = np.geomspace(wavenumber[wavenumber > 0].min(), qg.resolved_kmax(model), bands + 1)
    edges[0], edges[-1] = edges[0] * (1 - 1e-9), edges[-1] * (1 + 1e-9)
    nx = model.nx
    twice = np.full(wavenumber.shape[-1], 2.0)
    twice[0] = 1.0
    if nx % 2 == 0:
        twice[-1] = 1.0
    masks = [(wavenumber >= lo) & (wavenumber < hi) for lo, hi in zip(edges[:-1], edges[1:])]
    return jnp.asarray(np.stack(masks) * twice, model.filtr.dtype)


def observable_names(nz: int, bands: int) -> list[str]:
    """Names of the observables, in ``state_moments``'s order."""
    return ([f"KE{z + 1}_band{b + 1}" for z in range(nz) for b in range(bands)]
            + [f"enstrophy{z + 1}" for z in range(nz)] + [f"q_variance{z + 1}" for z in range(nz)])


def state_moments(model, q: jax.Array, masks: jax.Array) -> jax.Array:
    """The positive quantities whose time means are observed, at q (nz, ny, nx): the
    domain-mean u^2 + v^2 in each band (m^2/s^2), zeta^2 (1/s^2) and the variance of q."""
    u, v = qg.velocities(model, q)
    n = q.shape[-2] * q.shape[-1]
    power = (jnp.abs(jnp.fft.rfftn(u, axes=(-2, -1)))**2
             + jnp.abs(jnp.fft.rfftn(v, axes=(-2, -1)))**2) / n**2
    bands = jnp.einsum("byx,zyx->zb", masks, power).ravel()
    enstrophy = jnp.mean(qg.relative_vorticity(model, q)**2, axis=(-2, -1))
    return jnp.concatenate([bands, enstrophy, jnp.var(q, axis=(-2, -1))])


def data_observables(model, q: np.ndarray, masks, *, block: int,
                     average: int) -> tuple[np.ndarray, np.ndarray]:
    """``(y, gamma)`` of samples q (runs, samples, nz, ny, nx): the observables of all the
    samples, and their noise variance for a time mean over ``average`` samples, from the
    spread over blocks of ``block`` consecutive samples of each run."""
    moments = jax.jit(jax.vmap(lambda x: state_moments(model, x, masks)))
    per_sample = np.stack([np.asarray(moments(jnp.asarray(run, model.filtr.dtype)))
                           for run in q])
    n_blocks = per_sample.shape[1] // block
    if per_sample.shape[0] * n_blocks < 2:
        raise UserError(f"eki.block_days: blocks of {block} samples leave fewer than 2 blocks "
                        f"in {per_sample.shape[0]} training runs of {per_sample.shape[1]} "
                        f"samples; shorten the blocks")
    blocks = per_sample[:, :n_blocks * block].reshape(-1, block, per_sample.shape[-1])
    y = np.log(per_sample.reshape(-1, per_sample.shape[-1]).mean(axis=0))
    gamma = np.var(np.log(blocks.mean(axis=1)), axis=0, ddof=1) * block / average
    return y, gamma


@eqx.filter_jit
def _start(lores, closures, stepper, q0):
    """The members' carries (``checked_step``'s) at q0 (nz, ny, nx)."""
    def one(closure):
        model = parameterized_model(lores, closure, stepper)
        return jax.tree.map(lambda x: x[0], initial_carry(model, q0[None]))
    return eqx.filter_vmap(one)(closures)


@eqx.filter_jit
def _advance(lores, closures, stepper, carry, first, n):
    """The members' carries after n more steps, from step number ``first``."""
    def one(closure, c):
        model = parameterized_model(lores, closure, stepper)
        return jax.lax.fori_loop(0, n, lambda i, c: checked_step(model, c, first + i + 1), c)
    return eqx.filter_vmap(one)(closures, carry)


@eqx.filter_jit
def _moments(lores, carry, masks):
    return jax.vmap(lambda s: state_moments(lores, s.state.model_state.q, masks))(carry[0])


def ensemble_observables(lores, closures, stepper, q0: jax.Array, *, n_steps: int,
                         average_from: int, average_every: int, masks,
                         progress: str | None = None) -> np.ndarray:
    """(J, m) observables of runs of ``lores`` from q0 (nz, ny, nx), one per closure of
    ``closures`` (a closure whose arrays lead with the members axis J): the logs of the
    time means of ``state_moments`` over the states after every ``average_every``-th step
    after ``average_from``. The row of a run that blew up is NaN."""
    if average_from >= n_steps or average_from < 0:
        raise UserError(f"eki: average_from {average_from} leaves no state of a run of "
                        f"{n_steps} steps to average")
    carry = _start(lores, closures, stepper, q0)
    sums, averaged, now = 0.0, 0, 0
    for end in tqdm(range(average_every, n_steps + 1, average_every), desc=progress,
                    unit="block", disable=progress is None, leave=False):
        carry = _advance(lores, closures, stepper, carry, jnp.int32(now), jnp.int32(end - now))
        now = end
        if end > average_from:
            sums, averaged = sums + np.asarray(_moments(lores, carry, masks)), averaged + 1
    observables = np.log(sums / averaged)
    observables[np.asarray(carry[1]) >= 0] = np.nan
    return observables


def eki_update(u: np.ndarray, g: np.ndarray, y: np.ndarray, gamma: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """The perturbed-observation EKI update of the ensemble u (J, p) whose observables
    are g (J, m), towards y (m,) with noise variances gamma (m,). Members with a
    non-finite row of g take no part and come back at the updated mean."""
    alive = np.all(np.isfinite(g), axis=1)
    if alive.sum() < 2:
        raise UserError(f"eki: {alive.sum()} of {len(g)} members ran stably; the update "
                        f"needs 2 (lower eki.prior_std, or start from stabler constants)")
    ua, ga = u[alive], g[alive]
    du, dg = ua - ua.mean(axis=0), ga - ga.mean(axis=0)
    c_ug = du.T @ dg / (len(ua) - 1)
    c_gg = dg.T @ dg / (len(ua) - 1)
    eta = rng.normal(size=ga.shape) * np.sqrt(gamma)
    gain = np.linalg.solve(c_gg + np.diag(gamma), (y + eta - ga).T)
    new = u.copy()
    new[alive] = ua + (c_ug @ gain).T
    new[~alive] = new[alive].mean(axis=0)
    return new


def misfit(g: np.ndarray, y: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """(J,) mean over observables of (G_j - y)^2 / gamma: about 1 for a member that is
    the data up to its noise; NaN for a member that blew up."""
    return np.mean((g - y) ** 2 / gamma, axis=1)


class Inversion:
    """The EKI of one experiment's closure on its training runs: the ensemble's start,
    one iteration, and the closure of an ensemble's mean (the trainer drives the
    iterations, with its log and checkpoints)."""

    def __init__(self, setup, data: ReferenceData):
        experiment = setup.experiment
        self.setup, self.cfg = setup, experiment.training
        eki = self.cfg.eki
        params, self.static = eqx.partition(setup.parameterization,
                                            trainable(setup.parameterization))
        self.u0, self.unravel = ravel_pytree(params)
        if self.u0.size == 0:
            raise UserError(f"eki: network {experiment.network.kind!r} has nothing to "
                            f"calibrate; name its constants in the network's `trainable`")
        if self.u0.size >= eki.members:
            raise UserError(f"eki: {self.u0.size} parameters need more than {eki.members} "
                            f"members")
        lores = setup.lores
        sample_seconds = experiment.reference.sample_seconds
        self.n_steps = round(eki.run_days * DAY / setup.stepper.dt)
        self.average_every = experiment.steps_per_sample
        average = round(eki.average_days * DAY / sample_seconds)
        self.average_from = self.n_steps - average * self.average_every
        self.masks = band_masks(lores, eki.bands)
        q = np.asarray(data.fields["q"])
        self.y, self.gamma = data_observables(
            lores, q, self.masks, block=round(eki.block_days * DAY / sample_seconds),
            average=average)
        self.q0 = jnp.asarray(q[0, 0], lores.filtr.dtype)
        self.names = observable_names(lores.nz, eki.bands)

    def initial_ensemble(self) -> np.ndarray:
        """(J, p): the initial values plus ``prior_std`` times normal draws from the seed."""
        eki = self.cfg.eki
        draws = np.random.default_rng([self.cfg.seed]).normal(size=(eki.members, self.u0.size))
        return np.asarray(self.u0)[None] + eki.prior_std * draws

    def closure(self, u: np.ndarray):
        """The closure with the trainable values u (p,), or an ensemble of them (J, p)."""
        u = jnp.asarray(u, self.u0.dtype)
        params = self.unravel(u) if u.ndim == 1 else jax.vmap(self.unravel)(u)
        return eqx.combine(params, self.static)

    def iterate(self, u: np.ndarray, step: int, progress: bool = False):
        """The ensemble after iteration ``step`` from u (J, p), and its log record."""
        t0 = time.perf_counter()
        g = ensemble_observables(
            self.setup.lores, self.closure(u), self.setup.stepper, self.q0,
            n_steps=self.n_steps, average_from=self.average_from,
            average_every=self.average_every, masks=self.masks,
            progress="runs" if progress else None)
        scores = misfit(g, self.y, self.gamma)
        new = eki_update(u, g, self.y, self.gamma, np.random.default_rng([self.cfg.seed, step + 1]))
        stable = np.isfinite(scores)
        record = dict(step=step, loss=float(np.mean(scores[stable])), finite=bool(stable.all()),
                      rollout_steps=0, blown_up=int((~stable).sum()),
                      seconds=round(time.perf_counter() - t0, 4),
                      best_misfit=float(np.min(scores[stable])),
                      mean=u.mean(axis=0).tolist(), next_mean=new.mean(axis=0).tolist(),
                      next_spread=new.std(axis=0, ddof=1).tolist(),
                      observables=dict(zip(self.names, np.nanmean(g, axis=0).tolist())),
                      target=dict(zip(self.names, self.y.tolist())),
                      noise=dict(zip(self.names, np.sqrt(self.gamma).tolist())))
        return new, record
