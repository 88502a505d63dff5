"""An ensemble of runs split over forced host devices, against the same runs on one device.

XLA's CPU backend makes one device of the whole machine unless told otherwise
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``). This script steps
``--runs`` eddy runs vmapped (AB3, dt = 3600 s, float64, qgzoo's model) for
``--steps`` steps, in two fresh processes: one device, then the runs split
over ``--devices`` devices with ``jax.shard_map`` (each device steps its own
runs, no communication). It prints trajectory-steps/s of both, their ratio,
and the largest difference of the final q between the two (relative to its
largest value): 0 to rounding.

``--model pyqg-jax`` steps pyqg-jax's own QGModel instead, whose q -> psi
inversion is a batched LAPACK solve: split over devices it deadlocks (both
cores idle, no step ends), which ``--timeout`` turns into a printed line.

    .venv/bin/python benchmarks/host_devices.py                  # nx = 128 and 256
    .venv/bin/python benchmarks/host_devices.py --nx 64 --model pyqg-jax --timeout 120
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def child(nx: int, devices: int, runs: int, steps: int, model_name: str, out: str) -> None:
    """Step the ensemble on ``devices`` devices; write the rate and the final q to ``out``."""
    import jax
    import pyqg_jax.qg_model
    from jax.sharding import Mesh, PartitionSpec
    from pyqg_jax.steppers import AB3Stepper, SteppedModel

    from qgzoo.physics import qg

    physics = qg.PRESETS["eddy"]
    if model_name == "qgzoo":
        model = qg.make_model(physics, nx)
    else:
        model = pyqg_jax.qg_model.QGModel(nx=nx, precision=qg.PRECISIONS["double"], **physics)
    stepped = SteppedModel(model, AB3Stepper(dt=3600.0))
    keys = jax.random.split(jax.random.key(0), runs)
    # One step first, so that the loop's carry has the types of a stepped state.
    start = jax.vmap(lambda k: stepped.step_model(
        stepped.initialize_stepper_state(model.create_initial_state(k))))(keys)

    def advance(states):
        return jax.vmap(lambda s: jax.lax.fori_loop(
            0, steps, lambda _, x: stepped.step_model(x), s))(states)

    if devices > 1:
        mesh = Mesh(np.array(jax.devices()[:devices]), ("runs",))
        run = jax.jit(jax.shard_map(advance, mesh=mesh, in_specs=PartitionSpec("runs"),
                                    out_specs=PartitionSpec("runs"), check_vma=False))
    else:
        run = jax.jit(advance)
    jax.block_until_ready(run(start))
    begin = time.perf_counter()
    final = jax.block_until_ready(run(start))
    seconds = time.perf_counter() - begin
    np.save(out, np.asarray(final.state.q))
    print(json.dumps({"rate": runs * steps / seconds}))


def measure(args, nx: int, devices: int, out: str) -> dict | None:
    """Run ``child`` in a fresh process (the device count is fixed at JAX's start)."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    command = [sys.executable, __file__, "--child", str(nx), str(devices), out,
               "--runs", str(args.runs), "--steps", str(args.steps), "--model", args.model]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=args.timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nx", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8, help="runs in the ensemble")
    parser.add_argument("--steps", type=int, default=40, help="steps per timing")
    parser.add_argument("--model", choices=["qgzoo", "pyqg-jax"], default="qgzoo")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per process")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        nx, devices, out = args.child
        child(int(nx), int(devices), args.runs, args.steps, args.model, out)
        return
    if args.devices < 1 or args.runs % args.devices:
        parser.error(f"--runs ({args.runs}) must split evenly over --devices ({args.devices})")
    with tempfile.TemporaryDirectory() as folder:
        for nx in args.nx:
            one = measure(args, nx, 1, f"{folder}/one.npy")
            many = measure(args, nx, args.devices, f"{folder}/many.npy")
            if one is None or many is None:
                print(f"nx = {nx}, {args.model}: no result within {args.timeout:g} s "
                      f"(1 device: {'ok' if one else 'stopped'}, {args.devices} devices: "
                      f"{'ok' if many else 'stopped'})")
                continue
            q1, qn = np.load(f"{folder}/one.npy"), np.load(f"{folder}/many.npy")
            difference = np.abs(qn - q1).max() / np.abs(q1).max()
            print(f"nx = {nx}, {args.model}, {args.runs} runs x {args.steps} steps: 1 device "
                  f"{one['rate']:.0f} traj-steps/s, {args.devices} devices {many['rate']:.0f}: "
                  f"ratio {many['rate'] / one['rate']:.2f}; final q differs by {difference:.1e}")


if __name__ == "__main__":
    main()
