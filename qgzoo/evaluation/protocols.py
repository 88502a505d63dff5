"""How a comparison runs the models it scores: the online protocols.

- ``restarts`` (qgzoo's first): the low-resolution runs start from coarsened
  held-out high-resolution states and last as long as the reference's sampled
  period; climates pool the last ``n_hires_snapshots`` samples
  (``qgzoo.evaluation.benchmark``).
- ``ross2023`` (Ross et al. 2023, their notebooks' settings): every run, high
  and low resolution, starts from its own model's random initial condition and
  lasts 10 years of 360 days; the budget spectra are averaged over years 5 to 10
  and over runs; the distributions pool the last 10 snapshots, 1000 hours apart.
  Ross et al. accumulate the spectra at every step; here every 24 hours (1800
  states per run), as one budget evaluation at 256 x 256 costs more than a
  model step (17 against 14 ms on 2 cores).

A ``LongRunProtocol`` (``ross2023``) says everything about such runs; ``long_run``
makes them, and ``hires_long_run`` caches a reference's, which do not depend on
the entries.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
from pydantic import Field, model_validator

from qgzoo.components.networks import NoClosure
from qgzoo.core import devices, files
from qgzoo.core.errors import UserError
from qgzoo.core.schema import validate_component
from qgzoo.core.spec import FrozenSpec
from qgzoo.data.reference import ReferenceSpec
from qgzoo.evaluation.climate import Climate
from qgzoo.simulate.long_run import LongRun, random_initial_q, run_long

#: Seconds in pyqg's year (360 days).
YEAR_SECONDS = 360 * 86400.0
#: What the protocol's cached runs contain: bump when that changes.
LONG_RUN_VERSION = 1


class LongRunProtocol(FrozenSpec):
    """Every run from its own model's random initial condition, statistics in its second part."""

    years: float = Field(10.0, gt=0, description="length of every run, years of 360 days")
    average_from_years: float = Field(5.0, ge=0, description="start of the averaging, years")
    average_every_hours: float = Field(24.0, gt=0, description="spacing of the states whose "
                                       "budget spectra are averaged, hours")
    snapshot_every_hours: float = Field(1000.0, gt=0, description="spacing of kept q, hours")
    n_snapshots: int = Field(10, ge=1, description="last snapshots pooled for distributions")
    hires_runs: int = Field(2, ge=1, description="high-resolution runs of the reference")
    lores_runs: int = Field(4, ge=1, description="low-resolution runs of every entry")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.average_from_years >= self.years:
            raise ValueError(f"average_from_years ({self.average_from_years}) must be below "
                             f"years ({self.years})")
        return self

    def steps(self, dt: float) -> dict[str, int]:
        """``run_long``'s step counts for a model step of ``dt`` seconds."""
        def count(seconds, what):
            ratio = seconds / dt
            if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
                raise UserError(f"a time step of {dt} s does not divide {what} ({seconds} s)")
            return round(ratio)
        steps = dict(n_steps=count(self.years * YEAR_SECONDS, "the run's length"),
                     average_from=round(self.average_from_years * YEAR_SECONDS / dt),
                     average_every=count(self.average_every_hours * 3600, "average_every_hours"),
                     snapshot_every=count(self.snapshot_every_hours * 3600,
                                          "snapshot_every_hours"))
        n_kept = steps["n_steps"] // steps["snapshot_every"] - \
            -(-steps["average_from"] // steps["snapshot_every"]) + 1
        if n_kept < self.n_snapshots:
            raise UserError(f"the averaging period holds {n_kept} snapshots, fewer than "
                            f"n_snapshots ({self.n_snapshots})")
        return steps

    def keys(self, resolution: str, n: int) -> jax.Array:
        """Random keys of the ``n`` runs at ``resolution`` ("hires", "lores", or another
        name for an independent ensemble), the same for every entry."""
        stream = jax.random.fold_in(jax.random.key(self.seed), _stream_number(resolution))
        return jax.random.split(stream, n)


def _stream_number(name: str) -> int:
    return int(files.content_hash(name)[:7], 16)


#: Named protocols of ``qgzoo compare --protocol``; ``restarts`` has no settings.
PROTOCOLS: dict[str, LongRunProtocol | None] = {"restarts": None, "ross2023": LongRunProtocol()}
DEFAULT_PROTOCOL = "restarts"


def name_of(settings: LongRunProtocol | None) -> str:
    """The name of ``settings`` in ``PROTOCOLS``, or "long runs" for settings of one's own."""
    return next((name for name, value in PROTOCOLS.items() if value == settings), "long runs")


def protocol(name: str) -> LongRunProtocol | None:
    """The protocol called ``name`` (``PROTOCOLS``)."""
    if name not in PROTOCOLS:
        raise UserError(f"unknown protocol {name!r}; protocols: {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def long_run(model, parameterization, stepper, settings: LongRunProtocol, resolution: str,
             n_runs: int, *, name: str, progress: str | None = None) -> LongRun:
    """``run_long`` of ``n_runs`` runs of ``model`` (stepped by ``stepper``, a pyqg-jax
    stepper) from the random initial conditions of ``resolution`` (``LongRunProtocol.keys``).

    ``name`` (unique to the model and parameterization) names its progress file in
    ``$QGZOO_CACHE/long-runs``: a run stopped part-way goes on from its last block."""
    q0 = random_initial_q(model, settings.keys(resolution, n_runs))
    return run_long(model, parameterization, stepper, q0, progress=progress,
                    checkpoint=files.cache_dir() / "long-runs" / f"{name}.partial.npz",
                    **settings.steps(stepper.dt))


def save_long_run(run: LongRun, path: pathlib.Path) -> None:
    arrays = {f"budget/{k}": v for k, v in run.budget.items()}
    arrays |= dict(n_averaged=np.array(run.n_averaged), snapshots=run.snapshots,
                   snapshot_steps=run.snapshot_steps, ke=run.ke, ke_steps=run.ke_steps,
                   blowup_step=run.blowup_step, wall_seconds=np.array(run.wall_seconds))
    files.atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def load_long_run(path: pathlib.Path) -> LongRun:
    with np.load(path) as a:
        return LongRun(budget={k[len("budget/"):]: a[k] for k in a if k.startswith("budget/")},
                       n_averaged=int(a["n_averaged"]), snapshots=a["snapshots"],
                       snapshot_steps=a["snapshot_steps"], ke=a["ke"], ke_steps=a["ke_steps"],
                       blowup_step=a["blowup_step"], wall_seconds=float(a["wall_seconds"]))


def hires_long_run(reference: ReferenceSpec, settings: LongRunProtocol, *,
                   progress: bool = True) -> LongRun:
    """The reference's high-resolution runs under ``settings``, cached in
    ``$QGZOO_CACHE/long-runs`` (they do not depend on the coarseners or the samples)."""
    model_key = files.content_hash("hires", reference.physical_parameters, reference.hires_nx,
                                   reference.precision, reference.dt)
    digest = files.content_hash(LONG_RUN_VERSION, model_key, settings.model_dump(mode="json"),
                                "hires", settings.hires_runs)
    path = files.cache_dir() / "long-runs" / f"{digest}.npz"
    cached = files.read_cache(path, load_long_run)
    if cached is not None:
        return cached
    stepper = validate_component("stepper", {"kind": "ab3", "dt": reference.dt}).build()
    label = f"{reference.config} {reference.hires_nx} high resolution" if progress else None
    run = long_run(reference.hires_model(), NoClosure(), stepper, settings, "hires",
                   settings.hires_runs, name=digest, progress=label)
    if devices.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_long_run(run, path)
    return run


def climate_of(model, run: LongRun, settings: LongRunProtocol) -> Climate | None:
    """The climate of long runs: their time-averaged budget spectra averaged over the
    stable runs, and their last ``settings.n_snapshots`` snapshots pooled; None if every
    run blew up."""
    stable = run.stable
    if not stable.any():
        return None
    mean = {k: np.mean(v[stable], axis=0) for k, v in run.budget.items()}
    return Climate.from_budget(model, mean, run.snapshots[stable, -settings.n_snapshots:]
                               .reshape(-1, *run.snapshots.shape[2:]))
