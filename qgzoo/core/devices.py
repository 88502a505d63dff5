"""Devices and processes: how ensembles and training batches are split over them.

One process sees its own devices (``jax.local_devices()``); once
``jax.distributed`` is initialized it also knows those of every other process
(``jax.devices()``). On a CPU, XLA makes one device of the whole machine
unless told otherwise before JAX starts: ``configure(devices=N)`` makes N, each
stepping its share of the runs on its own thread, which on this package's
loops is faster than one device spreading each FFT over the cores
(``benchmarks/host_devices.py``).

The work is split along one mesh axis, ``AXIS``:

- ensembles (reference runs, comparison runs): each process steps its own
  group of runs (``process_runs``), split over its local devices
  (``runs_mesh``, ``over_runs``); runs never talk to each other;
- training batches: split over every device of every process
  (``batch_mesh``, ``global_batch``), the gradients averaged across them.

Only the main process (``is_main``) writes files. ``barrier`` waits for every
process; a process that died makes the others stop with ``ProcessLost`` (or,
while they compute, the distributed runtime stops them after
``heartbeat_seconds`` without word from it).
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from qgzoo.core.errors import UserError

#: The mesh axis that runs and training windows are split along.
AXIS = "data"
#: Environment variables that give ``configure``'s arguments their defaults.
ENVIRONMENT = {"devices": "QGZOO_DEVICES", "processes": "QGZOO_PROCESSES",
               "process_id": "QGZOO_PROCESS_ID", "coordinator": "QGZOO_COORDINATOR"}

#: How long a process waits at a barrier for the others, milliseconds (a process that
#: dies is noticed after ``heartbeat_seconds``; this bounds only the others' work).
BARRIER_TIMEOUT_MS = 7 * 24 * 3600 * 1000

_local_limit: int | None = None
_barriers = 0  # barriers passed: each barrier's name is unique


class ProcessLost(UserError):
    """Another process of a multi-process job stopped: this one cannot go on."""


def configure(devices: int | None = None, processes: int | str | None = None,
              process_id: int | None = None, coordinator: str | None = None, *,
              heartbeat_seconds: int = 100) -> None:
    """Set the devices and processes of this process, before JAX starts.

    ``devices``: devices this process uses; on a CPU, XLA is told to make that
    many. ``processes`` > 1 starts ``jax.distributed`` with ``coordinator``
    (host:port of process 0) and this process's ``process_id``; ``"auto"``
    lets JAX read them from the cluster's environment (Slurm, Open MPI,
    Kubernetes). ``heartbeat_seconds``: how long a process may go without word
    from another before the job stops.
    """
    global _local_limit
    if devices is not None:
        if devices < 1:
            raise UserError(f"devices must be at least 1, got {devices}")
        if _backend_started() and len(jax.local_devices()) < devices:
            raise UserError(f"{devices} devices asked for after JAX started with "
                            f"{len(jax.local_devices())}: configure devices first")
        if not _backend_started():
            jax.config.update("jax_num_cpu_devices", devices)
        _local_limit = devices
    if processes is None or processes == 1:
        return
    if processes == "auto":
        jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_seconds)
        return
    if coordinator is None or process_id is None:
        raise UserError(f"{processes} processes need a coordinator (host:port of process 0) "
                        f"and this process's id ({ENVIRONMENT['coordinator']}, "
                        f"{ENVIRONMENT['process_id']})")
    if not 0 <= process_id < processes:
        raise UserError(f"process id {process_id} is not in [0, {processes})")
    if _backend_started():
        raise UserError("jax.distributed must start before JAX computes anything")
    jax.distributed.initialize(coordinator, int(processes), process_id,
                               heartbeat_timeout_seconds=heartbeat_seconds)


def configure_from_environment() -> None:
    """``configure`` with the values of ``ENVIRONMENT``'s variables that are set."""
    values = {name: os.environ[variable] for name, variable in ENVIRONMENT.items()
              if os.environ.get(variable)}
    for name in ("devices", "process_id"):
        if name in values:
            values[name] = int(values[name])
    if values.get("processes", "auto") != "auto":
        values["processes"] = int(values["processes"])
    configure(**values)


def _backend_started() -> bool:
    from jax._src import xla_bridge  # JAX has no public way to ask this
    return bool(xla_bridge._backends)


def local_devices() -> list:
    """The devices of this process that the package uses."""
    return jax.local_devices()[:_local_limit]


def process_index() -> int:
    """This process's number in the job (0 outside a multi-process job, where asking
    does not start JAX's backend)."""
    return jax.process_index() if jax.distributed.is_initialized() else 0


def process_count() -> int:
    """The processes of the job (1 outside a multi-process job)."""
    return jax.process_count() if jax.distributed.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes the files (the first process)."""
    return process_index() == 0


def process_runs(n_runs: int, index: int | None = None) -> range:
    """The runs of an ensemble of ``n_runs`` that process ``index`` (default: this one)
    steps: a contiguous group, as near equal in size to the other processes' as can be;
    all of them where there are fewer runs than processes."""
    if n_runs < process_count():
        return range(n_runs)
    return contiguous_groups(n_runs, process_count())[
        process_index() if index is None else index]


def contiguous_groups(n: int, n_groups: int) -> list[range]:
    """``range(n)`` cut into ``n_groups`` contiguous groups of near-equal size."""
    bounds = np.linspace(0, n, n_groups + 1).round().astype(int)
    return [range(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def runs_mesh(n_runs: int) -> Mesh | None:
    """A mesh of this process's devices that ``n_runs`` split evenly over: the most such
    devices; None where that is one (no split)."""
    devices = local_devices()
    count = max(d for d in range(1, len(devices) + 1) if n_runs % d == 0)
    return Mesh(np.array(devices[:count]), (AXIS,)) if count > 1 else None


def over_runs(function: Callable, mesh: Mesh | None, split: tuple[int, ...] = (0,)) -> Callable:
    """``function`` with its arguments ``split`` (pytrees whose leaves lead with the runs
    axis) split over ``mesh``, each device applying it to its own runs; the other
    arguments go whole to every device, and every output leads with the runs axis."""
    if mesh is None:
        return function

    def specs(n):
        return tuple(PartitionSpec(AXIS) if i in split else PartitionSpec() for i in range(n))

    def split_function(*args):
        return jax.shard_map(function, mesh=mesh, in_specs=specs(len(args)),
                             out_specs=PartitionSpec(AXIS), check_vma=False)(*args)
    return split_function


def put_runs(tree, mesh: Mesh | None):
    """``tree`` (leaves leading with the runs axis) placed split over ``mesh``."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def batch_mesh(batch_size: int) -> Mesh | None:
    """The mesh a training batch of ``batch_size`` windows is split over: every device of
    every process; in one process, the most devices the batch splits evenly over. None
    for one device."""
    if process_count() == 1:
        return runs_mesh(batch_size)
    devices = [d for p in range(process_count()) for d in
               sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
               [:_local_limit]]
    if batch_size % len(devices):
        raise UserError(f"batch_size {batch_size} does not split over the {len(devices)} "
                        f"devices of {process_count()} processes; make it a multiple of "
                        f"{len(devices)}")
    return Mesh(np.array(devices), (AXIS,))


def local_rows(mesh: Mesh | None, n: int) -> slice:
    """The rows of an ``n``-row batch split over ``mesh`` that this process holds."""
    if mesh is None or process_count() == 1:
        return slice(0, n)
    indices = NamedSharding(mesh, PartitionSpec(AXIS)).addressable_devices_indices_map((n,))
    starts = [index[0].start or 0 for index in indices.values()]
    stops = [n if index[0].stop is None else index[0].stop for index in indices.values()]
    return slice(min(starts), max(stops))


def global_batch(mesh: Mesh | None, local, n: int):
    """The batch of ``n`` rows split over ``mesh``, from this process's rows ``local``
    (``local_rows``); ``local`` itself without a mesh. None stays None."""
    if mesh is None or local is None:
        return local
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))
    return jax.make_array_from_process_local_data(sharding, np.asarray(local),
                                                  (n, *local.shape[1:]))


def replicated(tree, mesh: Mesh | None):
    """``tree`` with each of its arrays whole on every device of ``mesh`` (other leaves
    as they are)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            return leaf
        if process_count() == 1:
            return jax.device_put(leaf, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf),
                                                      np.shape(leaf))
    return jax.tree.map(place, tree)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name``; ``ProcessLost`` if one is gone."""
    global _barriers
    if process_count() == 1:
        return
    from jax._src import distributed  # the runtime's own barrier, which fails in Python
    _barriers += 1
    try:
        distributed.global_state.client.wait_at_barrier(f"{_barriers}: {name}",
                                                        BARRIER_TIMEOUT_MS)
    except Exception as error:
        raise lost(error, f"before {name!r}") or error


def lost(error: Exception, where: str = "") -> ProcessLost | None:
    """The ``ProcessLost`` that ``error`` means (a connection to another process of the job
    broke), or None."""
    if process_count() == 1 or isinstance(error, ProcessLost):
        return None
    text = str(error)
    if not any(sign in text for sign in ("Gloo", "Connection closed", "heartbeat",
                                         "Connection reset", "UNAVAILABLE")):
        return None
    return ProcessLost(f"process {process_index()} of {process_count()}: another process "
                       f"stopped{' ' + where if where else ''} ({text.splitlines()[0]}); what "
                       f"was saved is kept: run the same command again on every process")


def gather_runs(values: np.ndarray, n_runs: int) -> np.ndarray:
    """The (runs, ...) array of all ``n_runs`` runs, from this process's ``process_runs``
    rows ``values``, on every process."""
    if process_count() == 1 or n_runs < process_count():
        return np.asarray(values)
    groups = [len(process_runs(n_runs, p)) for p in range(process_count())]
    width = max(groups)
    padded = np.zeros((width, *values.shape[1:]), values.dtype)
    padded[:len(values)] = values
    try:
        every = np.asarray(multihost_utils.process_allgather(padded))
    except Exception as error:
        raise lost(error, "while runs were gathered") or error
    return np.concatenate([every[p, :size] for p, size in enumerate(groups)])


def describe() -> str:
    """One line: the devices this process uses and, in a job, its place in it."""
    count = len(local_devices())
    kinds = "/".join(sorted({d.platform for d in local_devices()}))
    line = f"{count} {kinds} device{'s' * (count != 1)}"
    if process_count() == 1:
        return line
    return f"process {process_index()} of {process_count()}, {line}, {len(jax.devices())} in all"
