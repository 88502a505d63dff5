"""Work split over 2 devices or 2 processes of this machine, against the same work on one.

Each measurement runs in fresh processes (the device count and the
distributed runtime are fixed when JAX starts), through the package's own
code paths:

- ``generation``: what ``qgzoo data build`` runs in its spin-up, the builder's
  ``advance`` (``qgzoo.data.store._Builder``) of ``--runs`` eddy runs at
  ``--nx`` (AB3, dt = 3600 s, float64) for ``--steps`` steps; each process
  steps its own runs (``devices.process_runs``), split over its devices.
  Trajectory-steps/s = runs x steps / the slowest process's seconds.
- ``training``: one online update of ``qgzoo.training.trainer.make_update``
  (the zoo's CNN, ``state_mse`` through the solver, Adam) on a batch of
  ``--batch`` windows of ``--rollout-steps`` steps at 64 x 64, split over
  ``devices.batch_mesh``; updates/s.

``--layout devices`` makes N devices in one process (``--devices N``);
``--layout processes`` starts N processes on localhost with jax.distributed,
one device each. The ratio N / 1 is printed with the largest difference of
the results (the final q of the runs, the loss after the updates), relative
to their size: 0 to rounding.

    .venv/bin/python benchmarks/host_devices.py                    # generation, nx 128 and 256
    .venv/bin/python benchmarks/host_devices.py --work training --layout processes
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

SINGULAR = {"devices": "device", "processes": "process"}


def generation(args, out: str) -> dict:
    import jax

    from qgzoo.core import devices
    from qgzoo.data.reference import ReferenceSpec
    from qgzoo.data.store import _Builder

    spec = ReferenceSpec(config="eddy", hires_nx=args.nx, lores_nx=args.nx // 4,
                         n_runs=args.runs, n_test_runs=1, spinup_steps=args.steps,
                         coarseners=({"kind": "operator1"},))
    builder = _Builder(spec, devices.process_runs(args.runs))
    state = jax.block_until_ready(builder.advance(builder.initial_state(), args.steps))
    devices.barrier("compiled")
    begin = time.perf_counter()
    state = jax.block_until_ready(builder.advance(state, args.steps))
    seconds = time.perf_counter() - begin
    devices.barrier("timed")
    final = devices.gather_runs(np.asarray(state.state.qh), args.runs)
    np.save(out, final)
    return {"rate": args.runs * args.steps / seconds, "seconds": seconds}


def training(args, out: str) -> dict:
    import jax

    import qgzoo
    from qgzoo.core import devices
    from qgzoo.training.trainer import make_update
    from update_inputs import update_inputs

    experiment = qgzoo.Experiment(
        reference={"config": "eddy", "hires_nx": 256, "lores_nx": 64},
        coarsener={"kind": "operator1"}, network={"kind": "cnn", "channels": [16, 16]},
        loss={"kind": "state_mse"}, stepper={"kind": "ab3", "dt": 3600.0},
        training={"steps": 10, "batch_size": args.batch, "rollout_steps": args.rollout_steps})
    setup, optimizer, params, static, opt_state, windows = update_inputs(
        experiment, args.batch, args.rollout_steps)
    mesh = devices.batch_mesh(args.batch)
    update = make_update(setup, optimizer, mesh)
    rows = devices.local_rows(mesh, args.batch)
    q = devices.global_batch(mesh, np.asarray(windows)[rows], args.batch)
    forcing = devices.global_batch(mesh, np.zeros_like(np.asarray(windows))[rows], args.batch)
    keys = devices.global_batch(mesh, np.zeros((args.batch, 2), np.uint32)[rows], args.batch)
    params, static, opt_state = devices.replicated((params, static, opt_state), mesh)
    params, opt_state, loss, _ = jax.block_until_ready(
        update(params, static, opt_state, q, forcing, keys))
    devices.barrier("compiled")
    begin = time.perf_counter()
    for _ in range(args.updates):
        params, opt_state, loss, _ = update(params, static, opt_state, q, forcing, keys)
    jax.block_until_ready(loss)
    seconds = time.perf_counter() - begin
    devices.barrier("timed")
    np.save(out, np.array([float(loss)]))
    return {"rate": args.updates / seconds, "seconds": seconds}


def child(args) -> None:
    from qgzoo.core import devices

    layout, count, index, port, out = args.child
    count, index = int(count), int(index)
    if layout == "devices":
        devices.configure(devices=count)
    elif count > 1:
        devices.configure(devices=1, processes=count, process_id=index,
                          coordinator=f"localhost:{port}")
    result = {"generation": generation, "training": training}[args.work](args, out)
    if devices.is_main():
        print(json.dumps(result))


def measure(args, count: int, out: str) -> dict | None:
    """Run ``child`` in fresh processes: ``count`` devices, or ``count`` processes."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    processes = count if args.layout == "processes" else 1
    options = ["--work", args.work, "--nx", str(args.nx[0]), "--runs", str(args.runs),
               "--steps", str(args.steps), "--batch", str(args.batch),
               "--rollout-steps", str(args.rollout_steps), "--updates", str(args.updates)]
    jobs = [subprocess.Popen([sys.executable, __file__, *options, "--child", args.layout,
                              str(count), str(index), str(port), out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for index in range(processes)]
    try:
        outputs = [job.communicate(timeout=args.timeout) for job in jobs]
    except subprocess.TimeoutExpired:
        for job in jobs:
            job.kill()
        return None
    if any(job.returncode for job in jobs):
        raise SystemExit("a measurement failed:\n" + "\n".join(err[-2000:] for _, err in outputs))
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", choices=["generation", "training"], default="generation")
    parser.add_argument("--layout", choices=["devices", "processes"], default="devices")
    parser.add_argument("--count", type=int, default=2, help="devices or processes")
    parser.add_argument("--nx", type=int, nargs="+", default=[128, 256],
                        help="generation: high-resolution grids")
    parser.add_argument("--runs", type=int, default=8, help="generation: runs in the ensemble")
    parser.add_argument("--steps", type=int, default=40, help="generation: steps per timing")
    parser.add_argument("--batch", type=int, default=8, help="training: windows per batch")
    parser.add_argument("--rollout-steps", type=int, default=10, help="training: T")
    parser.add_argument("--updates", type=int, default=3, help="training: updates per timing")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.nx = args.nx[0]
        child(args)
        return
    grids = args.nx if args.work == "generation" else [64]
    with tempfile.TemporaryDirectory() as folder:
        for nx in grids:
            args.nx = [nx]
            one = measure(args, 1, f"{folder}/one.npy")
            many = measure(args, args.count, f"{folder}/many.npy")
            what = (f"{args.runs} eddy runs x {args.steps} steps at nx = {nx}, traj-steps/s"
                    if args.work == "generation" else
                    f"online updates of batch {args.batch} x T = {args.rollout_steps} at 64^2, "
                    f"updates/s")
            if one is None or many is None:
                print(f"{what}: no result within {args.timeout:g} s")
                continue
            a, b = np.load(f"{folder}/one.npy"), np.load(f"{folder}/many.npy")
            difference = np.abs(b - a).max() / np.abs(a).max()
            print(f"{what}: 1 {SINGULAR[args.layout]} {one['rate']:.4g}, {args.count} "
                  f"{args.layout} {many['rate']:.4g}: ratio {many['rate'] / one['rate']:.2f}; "
                  f"results differ by {difference:.1e}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
