"""The reference side of a comparison, small enough to ship with the zoo.

A ``Benchmark`` holds the high-resolution climate (``qgzoo.evaluation.climate``), the
held-out initial states of the low-resolution runs, held-out samples of q and of
the forcing for offline skill, one high-resolution snapshot and the held-out
runs' kinetic energy for figures. ``Benchmark.from_store`` derives it from a
reference store; ``load_benchmark(name)`` finds it in the zoo, the cache, or builds it.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.core import devices, files
from qgzoo.core.errors import UserError
from qgzoo.core.schema import validate_component
from qgzoo.data import store
from qgzoo.data.reference import REFERENCES, ReferenceSpec
from qgzoo.evaluation import protocols
from qgzoo.evaluation.climate import Climate
from qgzoo.evaluation.protocols import LongRunProtocol
from qgzoo.physics import budget, qg

#: Bump when what a benchmark or a cached run contains, or how it is computed, changes.
RESULTS_VERSION = 2
#: Held-out samples of q and forcing kept per test run for offline skill.
OFFLINE_SAMPLES_PER_RUN = 50
#: Low-resolution runs started from each held-out run, at samples evenly spaced over its
#: first two thirds: with two held-out runs, runs from 2 starts score differences between
#: two unparameterized ensembles of up to 1.7, from 6 starts up to 0.25.
STARTS_PER_RUN = 3


def starts(reference: ReferenceSpec) -> list[int]:
    """The samples of each held-out run where low-resolution runs start."""
    return [i * reference.n_samples // STARTS_PER_RUN for i in range(STARTS_PER_RUN)]


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """What the comparison needs of a reference store, without its high-resolution fields."""

    name: str
    reference: ReferenceSpec
    coarsener: dict
    hires: Climate
    """Climate of the last ``n_hires_snapshots`` samples of every run."""
    initial_q: np.ndarray
    """(test runs x STARTS_PER_RUN, nz, n, n) coarsened q of held-out samples (``starts``),
    where the low-resolution runs start, 1/s."""
    offline_q: np.ndarray
    """(samples, nz, n, n) held-out coarsened q, 1/s."""
    offline_forcing: np.ndarray
    """(samples, nz, n, n) the ``q_forcing_total`` at ``offline_q``, 1/s^2."""
    hires_ke: np.ndarray
    """(test runs, samples, nz) high-resolution kinetic energy u^2 + v^2, m^2/s^2."""
    hires_snapshot: np.ndarray
    """(nz, N, N) high-resolution q of the first held-out run's last sample, 1/s."""
    protocol: LongRunProtocol | None = None
    """How the runs are made (``qgzoo.evaluation.protocols``): None for ``restarts``, from
    the held-out states above; else long runs from random initial conditions, and
    ``initial_q`` holds only coarsened states for timings."""

    @property
    def key(self) -> str:
        parts = [RESULTS_VERSION, self.name, self.reference.model_dump(mode="json"),
                 self.coarsener]
        if self.protocol is not None:
            parts.append(self.protocol.model_dump(mode="json"))
        return files.content_hash(*parts)

    @property
    def protocol_name(self) -> str:
        return protocols.name_of(self.protocol)

    @property
    def final_coarse_q(self) -> np.ndarray:
        """(nz, n, n) coarsened q of ``hires_snapshot``, 1/s."""
        if self.protocol is not None:
            return self.initial_q[0]
        return self.offline_q[OFFLINE_SAMPLES_PER_RUN - 1]

    @property
    def test_runs(self) -> list[int]:
        """The high-resolution runs of ``hires_ke`` and ``hires_snapshot``: the held-out runs
        of the reference (``restarts``), or the protocol's own runs."""
        if self.protocol is not None:
            return list(range(self.hires_ke.shape[0]))
        return list(self.reference.split_runs()["test"])

    @property
    def hires_ke_days(self) -> np.ndarray:
        """(samples,) days of ``hires_ke``'s samples since the first sample (``restarts``)
        or since the random initial condition (long runs)."""
        if self.protocol is None:
            return np.arange(self.hires_ke.shape[1]) * self.reference.sample_seconds / 86400
        steps = self.protocol.steps(self.reference.dt)
        ends = np.minimum(steps["snapshot_every"] * np.arange(1, self.hires_ke.shape[1] + 1),
                          steps["n_steps"])
        return ends * self.reference.dt / 86400

    def describe_runs(self) -> str:
        """How the runs of this benchmark are made, in a sentence for reports."""
        if self.protocol is None:
            reference = self.reference
            return (f"low-resolution runs from samples {starts(reference)} of the held-out runs "
                    f"{self.test_runs}, each for {reference.n_samples - 1} samples of "
                    f"{reference.sample_seconds / 3600:g} h; the high-resolution climate pools "
                    f"the last {reference.n_hires_snapshots} samples of all "
                    f"{reference.n_runs} runs")
        p = self.protocol
        return (f"protocol `{self.protocol_name}`: {p.hires_runs} high-resolution runs and "
                f"{p.lores_runs} low-resolution runs per entry, each {p.years:g} years from its "
                f"own model's random initial condition; budget spectra averaged every "
                f"{p.average_every_hours:g} h from year {p.average_from_years:g} and over "
                f"runs; distributions pool the last {p.n_snapshots} snapshots, "
                f"{p.snapshot_every_hours:g} h apart")

    def lores_model(self):
        return self.reference.lores_model()

    def hires_model(self):
        return self.reference.hires_model()

    @property
    def kmax(self) -> float:
        return qg.resolved_kmax(self.lores_model())

    def schedule(self, dt: float) -> dict[str, int]:
        """``run_online`` arguments for a low-resolution step of ``dt`` seconds.

        Each run lasts as long as the reference's sampled period (first to last
        sample) and keeps its last ``n_hires_snapshots`` states at the sample
        spacing, as the high-resolution climate does.
        """
        ratio = self.reference.sample_seconds / dt
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise UserError(f"a time step of {dt} s does not divide the sample spacing "
                            f"({self.reference.sample_seconds} s) of {self.name}")
        every = round(ratio)
        return dict(n_steps=(self.reference.n_samples - 1) * every, snapshot_every=every,
                    n_snapshots=self.reference.n_hires_snapshots)

    def save(self, path: str | files.Location) -> files.Location:
        """Write the benchmark to ``path``, a ``.npz`` file (or an fsspec URL)."""
        path = files.location(path)
        if not files.is_remote(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(name=self.name, reference=self.reference.model_dump(mode="json"),
                    coarsener=self.coarsener, version=RESULTS_VERSION,
                    protocol=None if self.protocol is None else self.protocol.model_dump())
        arrays = self.hires.arrays("hires/") | dict(
            initial_q=self.initial_q, offline_q=self.offline_q.astype(np.float32),
            offline_forcing=self.offline_forcing.astype(np.float32), hires_ke=self.hires_ke,
            hires_snapshot=self.hires_snapshot.astype(np.float32), meta=np.array(json.dumps(meta)))
        def write(tmp):
            with tmp.open("wb") as handle:
                np.savez_compressed(handle, **arrays)

        return files.atomic_write(path, write)

    @classmethod
    def load(cls, path: str | files.Location) -> "Benchmark":
        """Read a benchmark written by ``save``; a file that is damaged or from another
        qgzoo version is a ``UserError`` naming it."""
        try:
            return cls._read(path)
        except UserError:
            raise
        except Exception as error:  # zipfile, zlib and numpy raise many types for bad bytes
            raise UserError(f"{path} is not a readable benchmark ({type(error).__name__}: "
                            f"{error}); delete it, or rebuild it with `qgzoo zoo benchmark "
                            f"NAME`") from None

    @classmethod
    def _read(cls, path):
        with files.location(path).open("rb") as handle, np.load(handle) as arrays:
            meta = json.loads(str(arrays["meta"]))
            if meta.get("version") != RESULTS_VERSION:
                raise UserError(f"{path} was written by another qgzoo version "
                                f"({meta.get('version')}, this one reads {RESULTS_VERSION}); "
                                f"rebuild it with `qgzoo zoo benchmark {meta['name']}`")
            settings = meta.get("protocol")
            return cls(name=meta["name"], reference=ReferenceSpec.model_validate(meta["reference"]),
                       coarsener=meta["coarsener"], protocol=None if settings is None else
                       LongRunProtocol.model_validate(settings),
                       hires=Climate.from_arrays(arrays, "hires/"),
                       **{k: np.asarray(arrays[k], np.float64) for k in (
                           "initial_q", "offline_q", "offline_forcing", "hires_ke",
                           "hires_snapshot")})

    @classmethod
    def from_store(cls, name: str, reference: ReferenceSpec, coarsener: dict,
                   path: str | files.Location, *, progress: bool = True) -> "Benchmark":
        """Derive the benchmark from the reference store at ``path`` (checked as training
        reads it: ``store.open_reference``)."""
        coarse = store.open_reference(path, validate_component("coarsener", coarsener),
                                      reference).fields
        root = store.open_group(path)
        test = reference.split_runs()["test"]
        stop = test.stop
        samples = np.linspace(0, reference.n_samples - 1, OFFLINE_SAMPLES_PER_RUN).astype(int)
        offline_q = np.concatenate([coarse["q"][run, samples] for run in test])
        offline_forcing = np.concatenate([coarse["q_forcing_total"][run, samples] for run in test])
        snapshots = np.asarray(root["hires/q"][:])
        if progress:
            print(f"{name}: climate of {snapshots.shape[0]} x {snapshots.shape[1]} "
                  f"high-resolution snapshots", flush=True)
        hires = Climate.from_snapshots(reference.hires_model(), snapshots)
        return cls(name=name, reference=reference, coarsener=coarsener, hires=hires,
                   initial_q=np.concatenate([coarse["q"][run, starts(reference)] for run in test]),
                   offline_q=offline_q, offline_forcing=offline_forcing,
                   hires_ke=np.asarray(root["hires/ke"][test.start:stop]),
                   hires_snapshot=snapshots[test.start, -1])

    @classmethod
    def from_long_runs(cls, name: str, reference: ReferenceSpec, coarsener: dict,
                       settings: LongRunProtocol, run: protocols.LongRun) -> "Benchmark":
        """The benchmark of the high-resolution long runs ``run`` (``protocols.hires_long_run``):
        their climate, and for offline skill every snapshot of their averaging period,
        coarsened, with its ``q_forcing_total``."""
        hires, lores = reference.hires_model(), reference.lores_model()
        built = validate_component("coarsener", coarsener).build(hires, lores)
        stable = run.snapshots[run.stable]
        q_hires = stable.reshape(-1, *stable.shape[2:])
        fields = jax.jit(jax.vmap(lambda q: (built.coarsen(q), built.q_forcing_total(q))))
        # Sliced on the host and fetched batch by batch: queueing slices of one large
        # device array with their computations hung XLA's CPU runtime (every thread idle)
        # on 86 snapshots of 256 x 256.
        parts = [jax.tree.map(np.asarray, fields(jnp.asarray(q_hires[i:i + 8])))
                 for i in range(0, q_hires.shape[0], 8)]
        offline_q = np.concatenate([p[0] for p in parts])
        offline_forcing = np.concatenate([p[1] for p in parts])
        last = offline_q.reshape(*stable.shape[:2], *offline_q.shape[1:])[:, -1]
        return cls(name=name, reference=reference, coarsener=coarsener,
                   hires=protocols.climate_of(hires, run, settings), initial_q=last,
                   offline_q=offline_q, offline_forcing=offline_forcing,
                   hires_ke=run.ke[run.stable], hires_snapshot=stable[0, -1], protocol=settings)

    def transfer_spectrum(self, forcing) -> tuple[np.ndarray, np.ndarray]:
        """(kr, spectrum): energy transfer of a forcing at ``offline_q``, averaged, m^3/s^3."""
        return _transfer(self.lores_model(), self.offline_q, forcing)


def shipped_path(name: str, protocol: str = protocols.DEFAULT_PROTOCOL) -> pathlib.Path:
    """Where the zoo ships the benchmark of reference preset ``name`` under ``protocol``."""
    suffix = "" if protocol == protocols.DEFAULT_PROTOCOL else f".{protocol}"
    return files.registry_dir() / "references" / f"{name}{suffix}.npz"


def _transfer(model, q, forcing):
    @jax.jit
    def mean(q, forcing):
        spectra = jax.vmap(lambda a, b: budget.forcing_energy_transfer(model, a, b))(q, forcing)
        return jnp.mean(spectra, axis=0)
    kr, spectrum = budget.isotropic_spectrum(model, mean(jnp.asarray(q), jnp.asarray(forcing)))
    return np.asarray(kr), np.asarray(spectrum)


def load_benchmark(name: str, protocol: str = protocols.DEFAULT_PROTOCOL, *,
                   progress: bool = True) -> Benchmark:
    """The benchmark of reference preset ``name`` (``qgzoo.data.reference.REFERENCES``) under
    ``protocol`` (``qgzoo.evaluation.protocols.PROTOCOLS``), Operator1, or the one saved at
    ``name``, a ``.npz`` file or URL (``Benchmark.save``).

    Shipped in the zoo (``registry/references/NAME[.PROTOCOL].npz``), else cached, else
    made: from the reference store (built if it is not cached either) for ``restarts``,
    from long high-resolution runs for the others.
    """
    if name.endswith(".npz"):
        return Benchmark.load(name)
    settings = protocols.protocol(protocol)
    shipped = shipped_path(name, protocol)
    if shipped.exists():
        return Benchmark.load(shipped)
    if name not in REFERENCES:
        raise UserError(f"unknown reference {name!r}; presets: {sorted(REFERENCES)}")
    reference = ReferenceSpec.model_validate(REFERENCES[name])
    coarsener = {"kind": "operator1"}
    full = reference.with_coarsener(validate_component("coarsener", coarsener))
    key = files.content_hash(RESULTS_VERSION, store.store_key(reference))
    if settings is not None:
        key = files.content_hash(key, settings.model_dump(mode="json"))
    cached = files.cache_dir() / f"benchmark-{shipped.stem}-{key}.npz"
    bench = files.read_cache(cached, Benchmark.load)
    if bench is not None:
        return bench
    if settings is None:
        path = store.store_path(full)
        store.build_store(full, path, progress=progress)
        bench = Benchmark.from_store(name, full, coarsener, path, progress=progress)
    else:
        run = protocols.hires_long_run(full, settings, progress=progress)
        bench = Benchmark.from_long_runs(name, full, coarsener, settings, run)
    if devices.is_main():
        bench.save(cached)
    return bench
