"""Build reference stores: run the ensemble, coarsen on the fly, write zarr, resume.

Runs advance together (vmapped, jitted loops) through a fixed plan of chunks:
spin-up chunks, then sample chunks. After each chunk the samples are written
into their place in the store and the high-resolution stepper state is saved
atomically beside it, so a build killed at any point restarts from the last
complete chunk and ends with the same store as an uninterrupted build.
Every array is chunked by run, so groups of runs can be built side by side,
each by its own process writing only its runs' chunks: ``build_store`` with
``workers`` (or a Dask scheduler's address) runs one group per Dask worker.

Store layout (zarr, readable with ``xarray.open_zarr(path, group=...)``):
one group per coarsener with q, u, v (low-res), q_forcing_total and
q_subgrid_forcing, dims ``run, time, lev, y, x``; a group ``hires`` with the
high-res q of the last samples and per-sample kinetic energy and CFL number.
The store's attributes hold the spec, the qgzoo version and the sanity checks.

Every chunk carries a CRC-32C and a complete store holds the size and SHA-256
of its files (``qgzoo.data.checksums``): opening a store checks that its files
are all there with their sizes, a damaged chunk fails when read, and
``verify_store`` compares every byte. Each fault is a ``StoreError`` that
names the file and says how to rebuild.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import zarr
from pydantic import ValidationError
from pyqg_jax.steppers import AB3Stepper, SteppedModel
from tqdm.auto import tqdm

from qgzoo.core import devices, files
from qgzoo.core.errors import UserError
from qgzoo.core.fields import LONG_NAMES, UNITS
from qgzoo.core.plugins import distribution_version
from qgzoo.core.schema import validation_messages
from qgzoo.core.spec import CoarsenerSpec
from qgzoo.data import checksums
from qgzoo.data.reference import ReferenceData, ReferenceSpec, coarsener_name
from qgzoo.physics import qg

#: Bump when generation changes what a spec produces, so stale stores are not reused.
DATA_VERSION = 3
SPINUP_CHUNK = 1000  # high-res steps per spin-up chunk
SAMPLE_CHUNK_BYTES = 64 * 2**20  # target size of one chunk's low-res output
KE_TREND_LIMIT = 0.25  # |trend over the kept period| / mean kinetic energy
#: zarr's default compression, then a CRC-32C of the compressed bytes, so that
#: damaged bytes fail to decode rather than decode to wrong numbers.
COMPRESSORS = (zarr.codecs.ZstdCodec(level=0), zarr.codecs.Crc32cCodec())
#: Problems named in one error message; the error's ``problems`` holds them all.
MAX_PROBLEMS_SHOWN = 50


class StoreError(UserError):
    """A store that does not match its spec, is incomplete, damaged, or not a store.

    ``problems`` lists every fault found, each naming a file inside the store.
    """

    def __init__(self, message: str, problems: list[str] = ()):
        super().__init__(message)
        self.problems = list(problems)


def store_key(spec: ReferenceSpec) -> str:
    """Content hash of what determines a store."""
    return files.content_hash([DATA_VERSION, spec.model_dump(mode="json")])


def store_path(spec: ReferenceSpec) -> files.Location:
    """Where the store of ``spec`` is built and read: in ``files.stores_dir()``, the cache
    unless ``$QGZOO_STORES`` names a folder or an object store."""
    return files.stores_dir() / f"reference-{store_key(spec)}.zarr"


def open_group(path: str | files.Location, mode: str = "r") -> zarr.Group:
    """The zarr group at ``path``, a local folder or a URL (through fsspec)."""
    path = files.location(path)
    if not files.is_remote(path):
        return zarr.open_group(path, mode=mode)
    store = zarr.storage.FsspecStore.from_url(str(path), read_only=mode == "r",
                                              storage_options=dict(path.storage_options))
    return zarr.open_group(store, mode=mode)


def _plan(spec: ReferenceSpec) -> list[tuple[str, int]]:
    """The chunks of a build: ("spinup", steps) then ("samples", n) then ("snapshots", n)."""
    chunks = [("spinup", min(SPINUP_CHUNK, spec.spinup_steps - start))
              for start in range(0, spec.spinup_steps, SPINUP_CHUNK)]
    per_sample = 8 * spec.n_runs * 2 * spec.lores_nx**2 * len(spec.fields) * len(spec.coarseners)
    per_chunk = int(max(1, min(SAMPLE_CHUNK_BYTES // per_sample,
                               -(-SPINUP_CHUNK // spec.sample_interval))))
    plain = spec.n_samples - spec.n_hires_snapshots
    chunks += [("samples", min(per_chunk, plain - start)) for start in range(0, plain, per_chunk)]
    if spec.n_hires_snapshots:
        chunks.append(("snapshots", spec.n_hires_snapshots))
    return chunks


class _Builder:
    """The jitted pieces of a build of some runs of a spec, split over this process's
    devices."""

    def __init__(self, spec: ReferenceSpec, runs: range):
        self.spec, self.runs = spec, runs
        self.mesh = devices.runs_mesh(len(runs))
        self.hires = spec.hires_model()
        self.model = SteppedModel(self.hires, AB3Stepper(dt=float(spec.dt)))
        lores = spec.lores_model()
        self.coarseners = [c.build(self.hires, lores) for c in spec.coarseners]
        self.advance = jax.jit(self._advance, static_argnums=1)
        self.sample_chunk = jax.jit(self._sample_chunk, static_argnums=(1, 2))

    def initial_state(self):
        """The initial states of the runs, each from its own key of the spec's seed, so
        that a run starts the same whichever group builds it."""
        keys = jax.random.split(jax.random.key(self.spec.seed), self.spec.n_runs)
        states = jax.vmap(self.model.create_initial_state)(keys[self.runs.start:self.runs.stop])
        return devices.put_runs(states, self.mesh)

    def _advance(self, state, n_steps):
        step = devices.over_runs(jax.vmap(self.model.step_model), self.mesh)
        return jax.lax.fori_loop(0, n_steps, lambda _, s: step(s), state)

    def _coarse_fields(self, coarsener, q_hires):
        q = coarsener.coarsen(q_hires)
        u, v = qg.velocities(coarsener.lores, q)
        fields = dict(q=q, u=u, v=v, q_forcing_total=coarsener.q_forcing_total(q_hires),
                      q_subgrid_forcing=coarsener.q_subgrid_forcing(q_hires))
        extras = set(self.spec.extra_fields)
        if extras & {"uq_subgrid_flux", "vq_subgrid_flux"}:
            fields["uq_subgrid_flux"], fields["vq_subgrid_flux"] = coarsener.q_subgrid_flux(q_hires)
        if extras & {"u_subgrid_forcing", "v_subgrid_forcing"}:
            fields["u_subgrid_forcing"], fields["v_subgrid_forcing"] = (
                coarsener.momentum_subgrid_forcing(q_hires))
        return {name: fields[name] for name in self.spec.fields}

    def _sample(self, q_hires):
        """Coarse fields per coarsener, high-res kinetic energy per layer and CFL number."""
        full = self.hires.get_full_state(qg.state_from_q(self.hires, q_hires))
        ke = jnp.mean(full.u**2 + full.v**2, axis=(-2, -1))
        speed = jnp.max(jnp.abs(full.u + self.hires.Ubg[:, None, None]) + jnp.abs(full.v))
        cfl = speed * self.spec.dt / self.hires.dx
        return [self._coarse_fields(c, q_hires) for c in self.coarseners], ke, cfl

    def _sample_chunk(self, state, n_samples, keep_hires):
        def body(state, _):
            state = self._advance(state, self.spec.sample_interval)
            q_hires = state.state.q
            lores, ke, cfl = devices.over_runs(jax.vmap(self._sample), self.mesh)(q_hires)
            return state, (lores, ke, cfl, q_hires if keep_hires else None)
        return jax.lax.scan(body, state, length=n_samples)


def _create(root: zarr.Group, spec: ReferenceSpec):
    runs, n = spec.n_runs, spec.lores_nx
    time = (spec.spinup_steps + spec.sample_interval * np.arange(1, spec.n_samples + 1)) * spec.dt
    dims = ["run", "time", "lev", "y", "x"]
    time_chunk = max(1, min(spec.n_samples, 64))

    def coordinates(group, nx, times, time_name="time"):
        dx = spec.physical_parameters["L"] / nx
        xs = (np.arange(nx) + 0.5) * dx
        for name, values, units in [(time_name, times, "s"), ("lev", np.array([1, 2]), ""),
                                    ("x", xs, "m"), ("y", xs, "m"),
                                    ("run", np.arange(runs), "")]:
            array = group.create_array(name, shape=values.shape, dtype=values.dtype,
                                       dimension_names=[name], compressors=COMPRESSORS)
            array[:] = values
            array.attrs["units"] = units

    for coarsener in spec.coarseners:
        group = root.create_group(coarsener_name(coarsener))
        group.attrs["coarsener"] = coarsener.model_dump(mode="json")
        coordinates(group, n, time)
        for name in spec.fields:
            array = group.create_array(name, shape=(runs, spec.n_samples, 2, n, n),
                                       chunks=(1, time_chunk, 2, n, n), dtype="f8",
                                       fill_value=np.nan, dimension_names=dims,
                                       compressors=COMPRESSORS)
            array.attrs.update(units=UNITS[name], long_name=LONG_NAMES[name])
    hires = root.create_group("hires")
    big = spec.hires_nx
    if spec.n_hires_snapshots:
        coordinates(hires, big, time[spec.n_samples - spec.n_hires_snapshots:], "snapshot")
        array = hires.create_array("q", shape=(runs, spec.n_hires_snapshots, 2, big, big),
                                   chunks=(1, 1, 2, big, big), dtype="f8", fill_value=np.nan,
                                   dimension_names=["run", "snapshot", "lev", "y", "x"],
                                   compressors=COMPRESSORS)
        array.attrs.update(units="s^-1", long_name="high-resolution potential vorticity")
    ke = hires.create_array("ke", shape=(runs, spec.n_samples, 2), dtype="f8",
                            chunks=(1, spec.n_samples, 2), fill_value=np.nan,
                            dimension_names=["run", "time", "lev"], compressors=COMPRESSORS)
    ke.attrs.update(units="m^2 s^-2", long_name="high-resolution mean kinetic energy")
    cfl = hires.create_array("cfl", shape=(runs, spec.n_samples), dtype="f8",
                             chunks=(1, spec.n_samples), fill_value=np.nan,
                             dimension_names=["run", "time"], compressors=COMPRESSORS)
    cfl.attrs.update(units="", long_name="high-resolution CFL number")
    time_array = hires.create_array("time", shape=time.shape, dtype=time.dtype,
                                    dimension_names=["time"], compressors=COMPRESSORS)
    time_array[:] = time
    root.attrs.update(qgzoo_spec=spec.model_dump(mode="json"),
                      qgzoo_version=distribution_version("qgzoo") or "dev",
                      data_version=DATA_VERSION, complete=False)


def _group(runs: range | None) -> str:
    return "" if runs is None else f".runs-{runs.start}-{runs.stop}"


def _resume_path(path: files.Location, runs: range | None = None) -> files.Location:
    """The state of a build (of a group of ``runs``) after its last complete chunk."""
    return path.with_name(f"{path.name}{_group(runs)}.resume.eqx")


#: The spec fields that determine the spun-up states.
SPUN_UP_BY = ("config", "physics", "hires_nx", "dt", "precision", "n_runs", "spinup_steps",
              "seed")


def spinup_key(spec: ReferenceSpec) -> str:
    """Content hash of what determines the high-resolution runs up to the end of spin-up
    (not the coarseners, the fields or the sampling)."""
    dump = spec.model_dump(mode="json")
    return files.content_hash([DATA_VERSION, {name: dump[name] for name in SPUN_UP_BY}])



def _spinup_path(path: files.Location, spec: ReferenceSpec,
                 runs: range | None = None) -> files.Location:
    """The states at the end of spin-up, kept beside the stores: a store of the same runs
    with other coarseners, fields or sampling starts from them."""
    return path.with_name(f"spinup-{spinup_key(spec)}{_group(runs)}.eqx")


def build_store(spec: ReferenceSpec, path: str | files.Location, *, progress: bool = True,
                stop_after_chunks: int | None = None, workers: int | None = None,
                scheduler: str | None = None) -> files.Location:
    """Build (or resume building) the store of ``spec`` at ``path``; returns the path.

    The build holds the store's lock: a second process building the same
    store waits for the first (saying so on stderr), then finds it complete.
    ``stop_after_chunks`` stops early, as if interrupted (for tests). ``path``
    may be an fsspec URL (``s3://bucket/ref.zarr``): each chunk's samples are
    written there as they come, and nothing locks it, so build it from one
    process. With ``workers`` (a ``LocalCluster`` of that many worker
    processes) or ``scheduler`` (a Dask scheduler's address), the runs are
    split into one group per worker, each built by ``build_runs`` on its worker.
    In a job of several processes (``qgzoo.core.devices``), every process calls
    it and builds its own group of runs; the main process creates, locks and
    finishes the store.
    """
    if not spec.coarseners:
        raise ValueError("a reference store needs at least one coarsener in spec.coarseners")
    path = files.location(path)
    if devices.process_count() > 1:
        _build_together(spec, path, progress)
        return path
    with files.locked(path, wait=True):
        root = _open_for_writing(spec, path)
        if not root.attrs.get("complete"):
            if workers is None and scheduler is None:
                built = _fill(root, spec, path, progress, stop_after_chunks)
            else:
                built = _fill_on_dask(spec, path, workers, scheduler, progress)
            if built:
                _finish(root, path)
    return path


def _build_together(spec: ReferenceSpec, path: files.Location, progress: bool) -> None:
    """``build_store`` in every process of a job: each fills its ``devices.process_runs``."""
    main = devices.is_main()
    with contextlib.ExitStack() as stack:
        if main:
            stack.enter_context(files.locked(path, wait=True))
            _open_for_writing(spec, path)
        devices.barrier(f"store {path.name} created")
        root = open_group(path, "r+")
        if root.attrs.get("complete"):
            return
        runs = devices.process_runs(spec.n_runs)
        if main or len(runs) < spec.n_runs:
            _fill(root, spec, path, progress and main, None, runs)
        devices.barrier(f"runs of {path.name} built")
        if main:
            _finish(root, path)
        devices.barrier(f"store {path.name} complete")


def run_groups(n_runs: int, n_groups: int) -> list[range]:
    """``n_runs`` split into at most ``n_groups`` contiguous groups of near-equal size."""
    return devices.contiguous_groups(n_runs, min(n_groups, n_runs))


def build_runs(spec: dict, path: str, start: int, stop: int) -> None:
    """Build runs ``start`` to ``stop`` (excluded) of the store of ``spec`` at ``path``, created
    by ``build_store``: a task of a build on Dask, resumable like a whole build."""
    spec = ReferenceSpec.model_validate(spec)
    location = files.location(path)
    _fill(open_group(location, "r+"), spec, location, False, None, range(start, stop))


def _fill_on_dask(spec: ReferenceSpec, path: files.Location, workers: int | None,
                  scheduler: str | None, progress: bool) -> bool:
    # Here, not at the top: distributed takes a second to import, paid only by such builds.
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None if scheduler else LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(scheduler or cluster) as client:
            groups = run_groups(spec.n_runs, max(1, len(client.nthreads())))
            futures = [client.submit(build_runs, spec.model_dump(mode="json"), str(path),
                                     g.start, g.stop, key=f"runs-{g.start}-{g.stop}-{path.name}",
                                     pure=False) for g in groups]
            for done, future in enumerate(as_completed(futures), 1):
                future.result()
                if progress:
                    print(f"reference {path.name}: {done}/{len(groups)} groups of runs built",
                          file=sys.stderr, flush=True)
    finally:
        if cluster is not None:
            cluster.close()
    return True


def _fill(root: zarr.Group, spec: ReferenceSpec, path: files.Location, progress: bool,
          stop_after_chunks: int | None, runs: range | None = None) -> bool:
    """Run the chunks of the plan not done yet, for ``runs`` (default all); whether they
    are all done (not stopped by ``stop_after_chunks``)."""
    plan = _plan(spec)
    builder = _Builder(spec, runs or range(spec.n_runs))
    # The resume file holds the state after the last complete chunk and that
    # chunk's number, replaced atomically: the store's own metadata is written
    # only when it is created and when it is complete.
    resume, spun_up = _resume_path(path, runs), _spinup_path(path, spec, runs)
    n_spinup = sum(kind == "spinup" for kind, _ in plan)
    state, done = builder.initial_state(), 0
    if resume.exists():
        state, done = files.read_tree(resume, (state, jnp.array(0)))
        state, done = devices.put_runs(state, builder.mesh), int(done)
    elif n_spinup and spun_up.exists():
        state, done = devices.put_runs(files.read_tree(spun_up, state), builder.mesh), n_spinup
    total_steps = spec.spinup_steps + spec.n_samples * spec.sample_interval
    steps_done = sum(_chunk_steps(spec, c) for c in plan[:done])
    bar = tqdm(total=total_steps, initial=steps_done, desc=f"reference {path.name}",
               unit="step", disable=not progress)
    sample = sum(n for kind, n in plan[:done] if kind != "spinup")
    try:
        for index in range(done, len(plan)):
            if stop_after_chunks is not None and index >= stop_after_chunks:
                return False
            kind, n = plan[index]
            if kind == "spinup":
                state = builder.advance(state, n)
            else:
                state, out = builder.sample_chunk(state, n, kind == "snapshots")
                _write_samples(root, spec, sample, out, kind == "snapshots",
                               runs or range(spec.n_runs))
                sample += n
            jax.block_until_ready(state)
            files.write_tree(resume, (state, jnp.array(index + 1)))
            if index + 1 == n_spinup:
                files.write_tree(spun_up, state)
            bar.update(_chunk_steps(spec, plan[index]))
    finally:
        bar.close()
    return True


def _finish(root: zarr.Group, path: files.Location) -> None:
    """Record the checksums and checks of a store whose runs are all built; mark it complete."""
    # The manifest before ``complete``: a build killed between the two leaves an
    # incomplete store, whose resumption writes the manifest again.
    checksums.write_manifest(path, files.content_hash(root.attrs["qgzoo_spec"]))
    checks = sanity_checks(root)
    root.attrs.update(checks=checks, complete=True, checksums=checksums.MANIFEST)
    for resume in path.parent.glob(f"{path.name}*.resume.eqx"):
        files.remove(resume)
    for message in checks["warnings"]:
        warnings.warn(f"{path}: {message}", stacklevel=3)


def _open_for_writing(spec: ReferenceSpec, path: files.Location) -> zarr.Group:
    """The store of ``spec`` at ``path``, created (all at once) if there is none.

    A local store is created beside its path and moved there; on an object
    store, which cannot move folders, the spec is the last attribute written,
    so one without it is a creation cut short and is made again.
    """
    if files.is_remote(path):
        if (path / "zarr.json").exists() and "qgzoo_spec" in open_group(path, "r").attrs:
            _check_spec(_open_store(path)[0], spec, path)
            return open_group(path, "r+")
        _create(open_group(path, "w"), spec)
        return open_group(path, "r+")
    if path.exists():
        _check_spec(_open_store(path)[0], spec, path)
        return zarr.open_group(path, mode="r+")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".creating")
    shutil.rmtree(tmp, ignore_errors=True)
    _create(zarr.open_group(tmp, mode="w"), spec)
    os.replace(tmp, path)
    return zarr.open_group(path, mode="r+")


def _chunk_steps(spec, chunk):
    kind, n = chunk
    return n if kind == "spinup" else n * spec.sample_interval


def _write_samples(root, spec, start, out, snapshots, runs: range):
    """Write the samples ``start`` on of ``runs`` (their chunks only)."""
    lores, ke, cfl, q_hires = out  # each with leading axes (time, run)
    stop, runs = start + ke.shape[0], slice(runs.start, runs.stop)
    for coarsener, fields in zip(spec.coarseners, lores):
        group = root[coarsener_name(coarsener)]
        for name in spec.fields:
            values = np.asarray(fields[name])  # (time, run, lev, y, x)
            if not np.isfinite(values).all():
                raise FloatingPointError(
                    f"the reference run produced non-finite {name} between samples "
                    f"{start} and {stop}; reduce dt or check the physics parameters")
            group[name][runs, start:stop] = np.moveaxis(values, 0, 1)
    root["hires/ke"][runs, start:stop] = np.moveaxis(np.asarray(ke), 0, 1)
    root["hires/cfl"][runs, start:stop] = np.moveaxis(np.asarray(cfl), 0, 1)
    if snapshots:
        root["hires/q"][runs, :] = np.moveaxis(np.asarray(q_hires), 0, 1)


def sanity_checks(root: zarr.Group) -> dict:
    """Physical checks of a finished store: spin-up levelled off, finite, CFL below 1."""
    ke = np.asarray(root["hires/ke"][:]).sum(axis=-1)  # (run, time)
    time = np.asarray(root["hires/time"][:])
    centred = time - time.mean()
    slopes = (ke * centred).sum(axis=1) / (centred**2).sum() if len(time) > 1 else 0 * ke[:, 0]
    trend = np.abs(slopes) * (time[-1] - time[0]) / ke.mean(axis=1)
    cfl = float(np.nanmax(root["hires/cfl"][:]))
    finite = bool(np.isfinite(ke).all())
    warnings_ = []
    if trend.max() > KE_TREND_LIMIT:
        warnings_.append(f"kinetic energy still drifts after spin-up: trend over the kept "
                         f"period up to {trend.max():.0%} of its mean (limit "
                         f"{KE_TREND_LIMIT:.0%}); lengthen spinup_steps")
    if cfl >= 1:
        warnings_.append(f"CFL number reaches {cfl:.2f} >= 1; reduce dt")
    if not finite:
        warnings_.append("non-finite kinetic energy")
    return {"ke_trend": [float(t) for t in trend], "max_cfl": cfl, "finite": finite,
            "warnings": warnings_}


def _check_spec(root, spec, path):
    stored = root.attrs.get("qgzoo_spec")
    if stored != spec.model_dump(mode="json") or root.attrs.get("data_version") != DATA_VERSION:
        raise StoreError(f"{path} was built from a different spec or qgzoo data version; "
                         "use another path or delete it")


def _open_store(path: files.Location) -> tuple[zarr.Group, ReferenceSpec]:
    """The root group and spec of the qgzoo store at ``path``; a StoreError if it is none."""
    if not path.exists():
        raise StoreError(f"no reference store at {path}")
    if not path.is_dir():
        raise StoreError(f"{path} is a file, not a reference store (a folder written by "
                         f"`qgzoo data build`)")
    try:
        root = open_group(path, "r")
    except Exception as error:  # zarr's errors for missing or bad metadata vary by version
        if not (path / "zarr.json").exists():
            raise StoreError(f"{path} is not a reference store: it has no zarr.json (stores "
                             f"are folders written by `qgzoo data build`)") from None
        raise StoreError(f"{path}/zarr.json cannot be read as a zarr group ({error}); if "
                         f"this was a qgzoo store, delete it and build it again with "
                         f"`qgzoo data build`") from None
    if "qgzoo_spec" not in root.attrs:
        raise StoreError(f"{path} is not a qgzoo reference store (no qgzoo_spec attribute)")
    try:
        return root, ReferenceSpec.model_validate(root.attrs["qgzoo_spec"])
    except ValidationError as error:
        raise StoreError(f"{path}: the spec in its zarr.json (qgzoo_spec) is not valid here: "
                         f"{validation_messages(error)[0]}; a plugin it needs may be "
                         f"missing") from None


def _damaged(path: files.Location, spec: ReferenceSpec, problems: list[str]) -> StoreError:
    """The error for a store whose files are missing or wrong: each problem, then the fix."""
    shown = problems[:MAX_PROBLEMS_SHOWN]
    if len(problems) > len(shown):
        shown.append(f"and {len(problems) - len(shown)} more")
    cached = _resolved(path) == _resolved(store_path(spec))
    build = "`qgzoo data build SPEC`" if cached else f"`qgzoo data build SPEC --out {path}`"
    return StoreError(f"{path} is damaged: {'; '.join(shown)}; delete the store and rebuild "
                      f"it with {build}, SPEC being a JSON file of the spec it was built from "
                      f"(qgzoo_spec in its zarr.json)", problems)


def _resolved(path: files.Location) -> str:
    return str(path if files.is_remote(path) else path.resolve())


def _check_files(path: files.Location, root: zarr.Group, spec: ReferenceSpec) -> dict | None:
    """``checksums.file_problems`` as a StoreError; returns the manifest (None: it has none)."""
    manifest, problems = checksums.file_problems(path, root, spec)
    if problems:
        raise _damaged(path, spec, problems)
    return manifest


def open_reference(path: str | files.Location, coarsener: CoarsenerSpec | None = None,
                   spec: ReferenceSpec | None = None) -> ReferenceData:
    """The data of one coarsener (default: the first) from a complete qgzoo store.

    The store's files must all be there with the sizes recorded at build time
    (a cheap check: no file is read); a chunk found damaged when read later is
    a StoreError naming its file.
    """
    path = files.location(path)
    root, stored = _open_store(path)
    if spec is not None:
        _check_spec(root, spec, path)
    if not root.attrs.get("complete"):
        raise StoreError(f"{path} is incomplete (its build was interrupted); run "
                         "`qgzoo data build` on the same spec and path to resume it")
    coarsener = coarsener or stored.coarseners[0]
    name, names = coarsener_name(coarsener), [coarsener_name(c) for c in stored.coarseners]
    if name not in names:
        raise StoreError(f"{path} has no data for coarsener {name!r}; it has {names}")
    _check_files(path, root, stored)
    fail = functools.partial(_damaged, path, stored)
    return ReferenceData({f: checksums.CheckedArray(root[f"{name}/{f}"], path, fail)
                          for f in stored.fields}, stored.n_test_runs, stored.n_val_runs)


def verify_store(path: str | files.Location) -> int | None:
    """Compare every file of the complete store at ``path`` with the size (bytes) and
    SHA-256 recorded when it was built; the number of files compared, or None for a
    store built before qgzoo recorded checksums.

    A StoreError lists every file that is missing, changed, or not written by the build.
    """
    path = files.location(path)
    root, spec = _open_store(path)
    if not root.attrs.get("complete"):
        raise StoreError(f"{path} is incomplete, so it has no checksums yet; run "
                         "`qgzoo data build` on the same spec and path to finish it")
    manifest = _check_files(path, root, spec)
    if manifest is None:
        return None
    problems = checksums.hash_problems(path, manifest)
    if problems:
        raise _damaged(path, spec, problems)
    return len(manifest["files"])


def describe_store(path: str | files.Location, *, verify: bool = False) -> str:
    """A readable summary of a store: spec, size, splits, checks, training-split RMS.

    The checks are made now on what the store holds: its files and arrays,
    finite values in every split, CFL number, kinetic-energy trend. A fault is
    a StoreError naming the file. ``verify`` also compares every file with its
    SHA-256 (``verify_store``).
    """
    path = files.location(path)
    root, spec = _open_store(path)
    size = sum(files.sizes(path).values())
    lines = [f"store    {path} ({size / 2**20:.1f} MiB, qgzoo {root.attrs.get('qgzoo_version')},"
             f" data version {root.attrs.get('data_version')})",
             f"status   {'complete' if root.attrs.get('complete') else 'INCOMPLETE (resume with qgzoo data build)'}",
             f"config   {spec.config}, {spec.hires_nx} -> {spec.lores_nx}, dt {spec.dt:g} s, "
             f"{spec.precision} precision, seed {spec.seed}",
             f"runs     {spec.n_runs}: " + ", ".join(
                 f"{name} {list(runs)}" for name, runs in spec.split_runs().items() if runs),
             f"samples  {spec.n_samples} per run every {spec.sample_seconds / 3600:g} h after "
             f"{spec.spinup_steps * spec.dt / 86400 / 360:.2f} years of spin-up"]
    if not root.attrs.get("complete"):
        return "\n".join(lines)
    manifest = _check_files(path, root, spec)
    if verify:
        verify_store(path)
    lines.append("checksums none: built before qgzoo recorded them (rebuild to have them)"
                 if manifest is None else f"checksums {len(manifest['files'])} files, " + (
                     "each matching its SHA-256" if verify else
                     "each of its recorded size (--verify compares their SHA-256)"))
    problems = checksums.value_problems(path, root, spec)
    if problems:
        raise _damaged(path, spec, problems)
    checks = sanity_checks(root)
    lines.append(f"checks   max CFL {checks['max_cfl']:.3f}; kinetic-energy trend over the kept "
                 f"period {max(checks['ke_trend']):.1%} of its mean (max over runs); "
                 f"{'finite' if checks['finite'] else 'NON-FINITE'}")
    lines += [f"warning  {w}" for w in checks["warnings"]]
    for coarsener in spec.coarseners:
        stats = open_reference(path, coarsener).split("train").stats()
        lines.append(f"{coarsener_name(coarsener)}: training-split RMS per layer")
        for name in spec.fields:
            upper, lower = np.asarray(stats.std[name])
            lines.append(f"  {name:18} {upper:10.3e} {lower:10.3e}  {UNITS[name]}")
    return "\n".join(lines)


def load_reference(spec: ReferenceSpec, coarsener: CoarsenerSpec, *,
                   progress: bool = True) -> ReferenceData:
    """The data of ``spec`` coarsened by ``coarsener``, from the cache or built there."""
    full = spec.with_coarsener(coarsener)
    path = store_path(full)
    build_store(full, path, progress=progress)
    return open_reference(path, coarsener, full)
