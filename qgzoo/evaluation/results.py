"""One parameterization on one benchmark: the entry, its result, and running it.

An ``Entry`` is a parameterization with the stepper it runs with; ``run_entry``
runs it from every held-out initial state of a ``Benchmark`` for the
reference's length (``qgzoo.simulate.online``) and scores its climate and offline
skill into a ``Result``; ``cached_run`` keeps results by content.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.components.networks import AbstractParameterization, NoClosure
from qgzoo.core import devices, files
from qgzoo.core.schema import validate_component
from qgzoo.evaluation import metrics, protocols
from qgzoo.evaluation.benchmark import Benchmark
from qgzoo.evaluation.climate import Climate
from qgzoo.simulate import online

#: The name of the model without parameterization, every comparison's baseline.
BASELINE = "no parameterization"
#: Under a long-run protocol, the same model from other random initial conditions: its
#: scores show how far from 0 sampling alone moves a score (the noise band).
NOISE = "no parameterization, other runs"


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
    ensemble: str = "lores"
    """The random initial conditions of its runs under a long-run protocol
    (``LongRunProtocol.keys``): another name gives an independent ensemble."""

    @property
    def key(self) -> str:
        buffer = io.BytesIO()
        eqx.tree_serialise_leaves(buffer, self.parameterization)
        kind = type(self.parameterization)
        # The class by its distribution's package and its name, so that moving it between
        # modules keeps the cache; the tree structure carries the static fields (a
        # closure's fixed constants).
        package = kind.__module__.partition(".")[0]
        parts = [buffer.getvalue(), f"{package}.{kind.__qualname__}",
                 str(jax.tree.structure(self.parameterization)), self.stepper]
        if self.ensemble != "lores":
            parts.append(self.ensemble)
        return files.content_hash(*parts)


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
    origin: str = "computed"
    """Where this result came from: "computed" now, "cached" (the comparison's cache) or
    "shipped" (``shipped_runs``); not saved."""

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


def run_entry(entry: Entry, bench: Benchmark, *, progress: bool = False) -> Result:
    """Run ``entry`` as the benchmark's protocol says (from its held-out initial states, or
    long runs from random ones); score offline skill."""
    lores = bench.lores_model()
    stepper_spec = validate_component("stepper", entry.stepper)
    start = time.perf_counter()
    forcing_fn = _forcing_fn(lores, entry.parameterization)
    if bench.protocol is None:
        run = online.run_online(lores, entry.parameterization, stepper_spec.build(),
                                bench.initial_q, **bench.schedule(stepper_spec.dt))
        climate = Climate.from_snapshots(lores, run.snapshots, forcing_fn)
    else:
        run = protocols.long_run(lores, entry.parameterization, stepper_spec.build(),
                                 bench.protocol, entry.ensemble, bench.protocol.lores_runs,
                                 name=f"{bench.key}-{entry.key}",
                                 progress=f"{bench.name}: {entry.name}" if progress else None)
        climate = protocols.climate_of(lores, run, bench.protocol)
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


def shipped_runs(bench: Benchmark) -> pathlib.Path:
    """Where the zoo ships finished runs on ``bench`` (``ship_run``), which every comparison
    reads before computing: one ``ENTRY_KEY.npz`` per entry, whose names (entries of the same
    content share a key) ``index.json`` lists."""
    return files.registry_dir() / "references" / "runs" / bench.key


def shipped_run(entry: Entry, bench: Benchmark) -> pathlib.Path:
    """Where the zoo ships the runs of ``entry`` on ``bench`` (which need not exist)."""
    return shipped_runs(bench) / f"{entry.key}.npz"


def ship_run(entry: Entry, bench: Benchmark, result: Result) -> pathlib.Path:
    """Keep ``result`` of ``entry`` on ``bench`` in the zoo (``shipped_runs``)."""
    folder = shipped_runs(bench)
    folder.mkdir(parents=True, exist_ok=True)
    path = shipped_run(entry, bench)
    result.save(path)
    index = folder / "index.json"
    names = files.read_json(index, "index of shipped runs") if index.exists() else {
        "benchmark": bench.name, "protocol": bench.protocol_name, "entries": {}}
    names["entries"][entry.key] = sorted({*names["entries"].get(entry.key, []), entry.name})
    files.atomic_write_text(index, json.dumps(names, indent=2, sort_keys=True) + "\n")
    return path


def cached_run(entry: Entry, bench: Benchmark, cache: pathlib.Path | None, *,
               refresh: bool = False, progress: bool = False) -> Result:
    """``run_entry``, read from the zoo's ``shipped_runs`` or from ``cache`` (a folder, None
    for no cache), else computed and written to ``cache``; ``refresh`` recomputes it and
    replaces what the cache held. ``Result.origin`` says which."""
    shipped = shipped_run(entry, bench)
    if not refresh and shipped.is_file():
        return dataclasses.replace(Result.load(shipped), origin="shipped")
    if cache is None:
        return run_entry(entry, bench, progress=progress)
    path = cache / bench.key / f"{entry.key}.npz"
    result = None if refresh else files.read_cache(path, Result.load)
    if result is not None:
        return dataclasses.replace(result, origin="cached")
    result = run_entry(entry, bench, progress=progress)
    if devices.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        result.save(path)
    return result
