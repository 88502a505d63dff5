"""One parameterization on one benchmark: the entry, its result, and running it.

An ``Entry`` is a parameterization with the stepper it runs with; ``run_entry``
runs it from every held-out initial state of a ``Benchmark`` for the
reference's length (``qgzoo.simulate.online``) and scores its climate and offline
skill into a ``Result``; ``cached_run`` keeps results by content.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.components.networks import AbstractParameterization, NoClosure
from qgzoo.core import files
from qgzoo.core.schema import validate_component
from qgzoo.evaluation import metrics
from qgzoo.evaluation.benchmark import Benchmark
from qgzoo.evaluation.climate import Climate
from qgzoo.simulate import online

#: The name of the model without parameterization, every comparison's baseline.
BASELINE = "no parameterization"


@dataclasses.dataclass(frozen=True)
class Entry:
    """A parameterization to compare, with the stepper it runs with."""

    name: str
    parameterization: AbstractParameterization
    stepper: dict
    history: tuple[dict, ...] = ()
    """Training log records (``log.jsonl``), for loss curves."""
    source: str = ""
    group: str | None = None
    """Entries of one group are seeds of one configuration (a sweep's): the leaderboard
    shows their mean and spread as one row."""

    @property
    def key(self) -> str:
        buffer = io.BytesIO()
        eqx.tree_serialise_leaves(buffer, self.parameterization)
        kind = type(self.parameterization)
        # The class by its distribution's package and its name, so that moving it between
        # modules keeps the cache; the tree structure carries the static fields (a
        # closure's fixed constants).
        package = kind.__module__.partition(".")[0]
        return files.content_hash(buffer.getvalue(), f"{package}.{kind.__qualname__}",
                                  str(jax.tree.structure(self.parameterization)), self.stepper)


@dataclasses.dataclass(frozen=True)
class Result:
    """One entry on one benchmark: its online runs and offline skill."""

    climate: Climate | None
    blowup_step: np.ndarray
    """(runs,) low-resolution step at which each run blew up, -1 if it did not."""
    ke: np.ndarray
    """(runs, intervals, nz) kinetic energy u^2 + v^2 at ``ke_steps``, m^2/s^2."""
    ke_steps: np.ndarray
    snapshot: np.ndarray
    """(nz, n, n) last q of the first run, 1/s (NaN if it blew up)."""
    offline: dict[str, np.ndarray]
    """``metrics.offline_scores`` of the forcing at the held-out samples, per layer."""
    transfer: np.ndarray
    """(nkr,) energy transfer spectrum of the predicted forcing, m^3/s^3."""
    dt: float
    run_seconds: float

    @property
    def stable(self) -> int:
        return int(np.sum(self.blowup_step < 0))

    def save(self, path: pathlib.Path) -> None:
        arrays = dict(blowup_step=self.blowup_step, ke=self.ke, ke_steps=self.ke_steps,
                      snapshot=self.snapshot, transfer=self.transfer,
                      dt=np.array(self.dt), run_seconds=np.array(self.run_seconds))
        arrays |= {f"offline/{k}": v for k, v in self.offline.items()}
        if self.climate is not None:
            arrays |= self.climate.arrays("climate/")
        files.atomic_write(path, lambda tmp: np.savez(tmp, **arrays))

    @classmethod
    def load(cls, path: pathlib.Path) -> "Result":
        with np.load(path) as a:
            return cls(
                climate=Climate.from_arrays(a, "climate/") if "climate/kr" in a else None,
                blowup_step=a["blowup_step"], ke=a["ke"], ke_steps=a["ke_steps"],
                snapshot=a["snapshot"], transfer=a["transfer"], dt=float(a["dt"]),
                run_seconds=float(a["run_seconds"]),
                offline={k[len("offline/"):]: a[k] for k in a if k.startswith("offline/")})


def _forcing_fn(model, parameterization):
    if isinstance(parameterization, NoClosure):
        return None
    return lambda q: parameterization.q_forcing_at(model, q)


def run_entry(entry: Entry, bench: Benchmark) -> Result:
    """Run ``entry`` from the benchmark's held-out initial states; score offline skill."""
    lores = bench.lores_model()
    stepper_spec = validate_component("stepper", entry.stepper)
    start = time.perf_counter()
    run = online.run_online(lores, entry.parameterization, stepper_spec.build(), bench.initial_q,
                            **bench.schedule(stepper_spec.dt))
    forcing_fn = _forcing_fn(lores, entry.parameterization)
    climate = Climate.from_snapshots(lores, run.snapshots, forcing_fn)
    if forcing_fn is None:
        predicted = np.zeros_like(bench.offline_forcing)
    else:
        predicted = np.asarray(jax.jit(jax.vmap(forcing_fn))(jnp.asarray(bench.offline_q)))
    _, transfer = bench.transfer_spectrum(predicted)
    return Result(climate=climate, blowup_step=run.blowup_step, ke=run.ke, ke_steps=run.ke_steps,
                  snapshot=run.snapshots[0, -1], offline=metrics.offline_scores(
                      predicted, bench.offline_forcing),
                  transfer=transfer, dt=stepper_spec.dt,
                  run_seconds=time.perf_counter() - start)


def cached_run(entry: Entry, bench: Benchmark, cache: pathlib.Path | None, *,
               refresh: bool = False) -> Result:
    """``run_entry``, read from or written to ``cache`` (a folder, None for no cache);
    ``refresh`` recomputes it and replaces what the cache held."""
    if cache is None:
        return run_entry(entry, bench)
    path = cache / bench.key / f"{entry.key}.npz"
    result = None if refresh else files.read_cache(path, Result.load)
    if result is not None:
        return result
    result = run_entry(entry, bench)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.save(path)
    return result
