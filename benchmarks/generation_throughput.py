"""Reference-generation throughput at high resolution: qgzoo's vmapped builder against pyqg.

Both sides step the eddy configuration at ``--nx`` (default 128) with AB3 and
dt = 3600 s; throughput is counted in trajectory-steps per second (runs x
steps / seconds), so an ensemble of 8 runs stepped 100 times is 800
trajectory-steps whichever way it is done.

- qgzoo: ``qgzoo.data.store._Builder`` exactly as ``qgzoo.data.store.build_store`` uses
  it, all ``--runs`` runs at once: ``advance`` (a jitted ``fori_loop`` over the
  vmapped pyqg-jax step, what the spin-up runs) and ``sample_chunk`` with a
  sample after every step (the advance plus coarsening, low-resolution
  velocities, both forcings, kinetic energy and CFL of every sample; writing
  the zarr store is not timed). Each in double and single precision
  (``ReferenceSpec.precision``), compiled first, then timed with
  ``jax.block_until_ready``.
- baseline: numpy pyqg 0.7.2 (Cython kernel, FFTW through pyFFTW if it was
  built with it) in a subprocess of ``.venv-pyqg/bin/python`` (``make
  pyqg-env`` builds it: pyqg needs numpy < 2, jax needs numpy 2), stepping one
  run at a time with ``QGModel._step_forward`` as a user of pyqg would, the
  same number of runs and steps; only the stepping is timed, not building the
  model (FFTW planning). pyqg is timed with ``ntd`` = 1 and with 2 threads
  (``--pyqg-threads``) and the faster one is the baseline. If ``.venv-pyqg`` is
  missing (or with ``--baseline pyqg-jax``) the baseline is one pyqg-jax run at
  a time instead: a jitted ``lax.scan`` of ``SteppedModel.step_model``.

After compiling, every measurement runs ``--reps`` times, interleaved, the
order reversed every other repetition, so other load on the machine falls on
all of them; medians are printed, with this process's (or the subprocess's)
CPU seconds for the same work: on a shared machine wall clock swings with
other jobs, and CPU/wall shows how many cores a side actually used. Nothing is
asserted.

    .venv/bin/python benchmarks/generation_throughput.py            # nx 128, 8 runs x 200 steps
    .venv/bin/python benchmarks/generation_throughput.py --steps 500 --runs 16 --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import time

import qgzoo  # noqa: F401, I001  (first: it switches on float64, which pyqg-jax needs)

import jax
import numpy as np
from pyqg_jax.steppers import AB3Stepper, SteppedModel

from qgzoo.core import devices
from qgzoo.physics import qg
from qgzoo.data.store import _Builder
from qgzoo.data.reference import ReferenceSpec

ROOT = pathlib.Path(__file__).resolve().parents[1]
DT = 3600.0
OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# Run by .venv-pyqg/bin/python: argv = nx, steps, runs, ntd, physics as JSON.
# Prints one JSON line: the stepping's wall and CPU seconds and what it ran on.
PYQG_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")  # pyqg warns about missing scipy (particles only)
import numpy as np
import pyqg, pyqg.kernel

nx, steps, runs, ntd = map(int, sys.argv[1:5])
physics = json.loads(sys.argv[5])
dt = 3600.0
wall = cpu = 0.0
finite = True
for run in range(runs):
    np.random.seed(run)  # pyqg draws its initial condition from numpy's global generator
    # No logging, and averaged diagnostics start after the end: only the stepping is done.
    m = pyqg.QGModel(nx=nx, dt=dt, tmax=dt * (steps + 1), twrite=10**9,
                     tavestart=dt * (steps + 10), log_level=0, ntd=ntd, **physics)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        m._step_forward()
    wall += time.perf_counter() - t0
    cpu += time.process_time() - c0
    finite = finite and bool(np.isfinite(m.q).all())
fftw = hasattr(pyqg.kernel, "pyfftw")
blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
print(json.dumps(dict(
    wall=wall, cpu=cpu, finite=finite, pyqg=pyqg.__version__, numpy=np.__version__,
    blas=f"{blas.get('name')} {blas.get('version')}",
    fft=("FFTW via pyFFTW " + __import__("pyfftw").__version__) if fftw else "numpy.fft")))
"""


def pyqg_python(path: str | None) -> pathlib.Path | None:
    python = pathlib.Path(path) if path else ROOT / ".venv-pyqg" / "bin" / "python"
    return python if python.exists() else None


def pyqg_environment(ntd: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARIABLES}
    # Cython's prange uses OpenMP; busy-waiting OpenMP threads on a machine with
    # other load can slow ntd > 1 down a hundredfold, so they sleep instead.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["OMP_NUM_THREADS"] = str(ntd)
    return env


def time_pyqg(python, args, physics, ntd):
    """(wall s, CPU s, info) of pyqg stepping args.runs runs of args.steps steps, one by one."""
    result = subprocess.run(
        [str(python), "-c", PYQG_SCRIPT, str(args.nx), str(args.steps), str(args.runs),
         str(ntd), json.dumps(physics)],
        env=pyqg_environment(ntd), capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"the pyqg subprocess failed:\n{result.stderr}")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    if not info["finite"]:
        print(f"WARNING: pyqg (ntd={ntd}) produced non-finite q")
    return info["wall"], info["cpu"], info


def timed(fn, *args):
    """fn(*args) finished, its wall-clock seconds and this process's CPU seconds."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0, time.process_time() - c0


class QgzooSide:
    """qgzoo's builder at one precision: advance and sample_chunk, carrying the state on."""

    def __init__(self, args, precision):
        self.spec = ReferenceSpec(config="eddy", hires_nx=args.nx, lores_nx=args.lores_nx,
                                  dt=DT, precision=precision, n_runs=args.runs,
                                  n_test_runs=1, spinup_steps=0, n_samples=max(2, args.steps),
                                  sample_interval=1, n_hires_snapshots=0,
                                  coarseners=({"kind": "operator1"},))
        self.builder = _Builder(self.spec, range(args.runs))
        self.steps = args.steps
        self.state = self.builder.initial_state()

    def advance(self):
        self.state, wall, cpu = timed(self.builder.advance, self.state, self.steps)
        return wall, cpu

    def sample(self):
        (self.state, out), wall, cpu = timed(self.builder.sample_chunk, self.state,
                                             self.steps, False)
        if not bool(np.isfinite(np.asarray(out[1])).all()):
            print(f"WARNING: qgzoo ({self.spec.precision}) produced non-finite energy")
        return wall, cpu


class PyqgJaxOneRun:
    """The fallback baseline: one pyqg-jax run at a time, a jitted scan of step_model."""

    def __init__(self, args):
        spec = ReferenceSpec(config="eddy", hires_nx=args.nx, lores_nx=args.lores_nx, dt=DT)
        model = SteppedModel(spec.hires_model(), AB3Stepper(dt=DT))
        keys = jax.random.split(jax.random.key(0), args.runs)
        self.states = [model.create_initial_state(k) for k in keys]
        steps = args.steps
        self.run = jax.jit(lambda state: jax.lax.scan(
            lambda s, _: (model.step_model(s), None), state, length=steps)[0])

    def __call__(self):
        wall = cpu = 0.0
        for i, state in enumerate(self.states):
            self.states[i], w, c = timed(self.run, state)
            wall, cpu = wall + w, cpu + c
        return wall, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nx", type=int, default=128, help="high-resolution grid points per side")
    parser.add_argument("--lores-nx", type=int, default=None,
                        help="low-resolution grid of the sampling path (default nx / 4)")
    parser.add_argument("--runs", type=int, default=8, help="runs in the ensemble (>= 2)")
    parser.add_argument("--steps", type=int, default=200, help="steps of every run, per timing")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions of everything")
    parser.add_argument("--baseline", choices=("auto", "pyqg", "pyqg-jax"), default="auto",
                        help="numpy pyqg from .venv-pyqg (auto: if it exists), or one-run pyqg-jax")
    parser.add_argument("--pyqg-python", default=None,
                        help="python of the pyqg environment (default .venv-pyqg/bin/python)")
    parser.add_argument("--pyqg-threads", type=int, nargs="+", default=[1, 2],
                        help="pyqg ntd values to time; the fastest is the baseline")
    parser.add_argument("--devices", type=int, default=1,
                        help="devices qgzoo's builder splits the runs over (on a CPU, XLA "
                             "makes that many)")
    args = parser.parse_args(argv)
    devices.configure(devices=args.devices)
    args.lores_nx = args.lores_nx or args.nx // 4

    python = None if args.baseline == "pyqg-jax" else pyqg_python(args.pyqg_python)
    if args.baseline == "pyqg" and python is None:
        raise SystemExit("no .venv-pyqg/bin/python: run `make pyqg-env` first")
    physics = qg.PRESETS["eddy"]
    trajectory_steps = args.runs * args.steps
    load = os.getloadavg()
    print(f"eddy nx {args.nx}, AB3 dt {DT:g} s, {args.runs} runs x {args.steps} steps = "
          f"{trajectory_steps} trajectory-steps per timing, {args.reps} reps; sampling path "
          f"coarsens to {args.lores_nx} (operator1) after every step")
    print(f"machine: os.cpu_count() = {os.cpu_count()}, usable "
          f"{len(os.sched_getaffinity(0))}; load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} at start (other jobs share the cores: wall clock is noisy)")
    print(f"qgzoo: jax {jax.__version__} on {jax.default_backend()}, {devices.describe()} "
          f"(XLA's CPU thread pool spans the usable cores), numpy {np.__version__}")

    # Compile (first call, which also runs the steps once) before timing.
    t0 = time.perf_counter()
    sides = {p: QgzooSide(args, p) for p in ("double", "single")}
    measure = {}
    for precision, side in sides.items():
        side.advance()
        side.sample()
        measure[f"qgzoo {precision} advance"] = side.advance
        measure[f"qgzoo {precision} advance+sample"] = side.sample
    print(f"qgzoo compiled and warmed up in {time.perf_counter() - t0:.1f} s")

    infos = {}
    if python is not None:
        set_here = {k: os.environ[k] for k in OPENBLAS_VARIABLES if k in os.environ}
        print(f"baseline: numpy pyqg via {python.relative_to(ROOT) if python.is_relative_to(ROOT) else python}"
              f" (subprocess; unset there: {set_here or 'none of ' + ', '.join(OPENBLAS_VARIABLES)} "
              f"was set; OMP_WAIT_POLICY={pyqg_environment(1)['OMP_WAIT_POLICY']})")
        for ntd in args.pyqg_threads:
            def run(ntd=ntd):
                wall, cpu, infos[ntd] = time_pyqg(python, args, physics, ntd)
                return wall, cpu
            measure[f"pyqg ntd={ntd}"] = run
        baselines = [f"pyqg ntd={ntd}" for ntd in args.pyqg_threads]
    else:
        if args.baseline == "auto":
            print("baseline: .venv-pyqg not found (make pyqg-env builds it); falling back to a "
                  "one-run-at-a-time pyqg-jax loop (jitted lax.scan of SteppedModel.step_model, "
                  "double precision)")
        else:
            print("baseline: one-run-at-a-time pyqg-jax loop (jitted lax.scan of "
                  "SteppedModel.step_model, double precision)")
        one_run = PyqgJaxOneRun(args)
        one_run()  # compile
        measure["pyqg-jax one run at a time"] = one_run
        baselines = ["pyqg-jax one run at a time"]

    wall = {name: [] for name in measure}
    cpu = {name: [] for name in measure}
    names = list(measure)
    for rep in range(args.reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            w, c = measure[name]()
            wall[name].append(w)
            cpu[name].append(c)
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(
            f"{name} {trajectory_steps / wall[name][-1]:.0f}" for name in names)
            + " trajectory-steps/s")

    for ntd, info in infos.items():
        print(f"pyqg ntd={ntd}: pyqg {info['pyqg']}, numpy {info['numpy']} ({info['blas']}), "
              f"FFT: {info['fft']}")
    rate = {name: trajectory_steps / statistics.median(wall[name]) for name in names}
    cpu_rate = {name: trajectory_steps / statistics.median(cpu[name]) for name in names}
    width = max(map(len, names))
    print(f"{'':{width}}  trajectory-steps/s: median (min..max), per CPU-second; CPU/wall")
    for name in names:
        lo, hi = trajectory_steps / max(wall[name]), trajectory_steps / min(wall[name])
        cores = statistics.median(c / w for c, w in zip(cpu[name], wall[name]))
        print(f"{name:{width}}  {rate[name]:8.1f} ({lo:.1f}..{hi:.1f}), "
              f"{cpu_rate[name]:.1f} per CPU-s; CPU/wall {cores:.2f}")

    baseline = max(baselines, key=rate.get)
    label = "pyqg" if python is not None else "pyqg-jax-1run"
    print(f"baseline: {baseline} (the fastest of {', '.join(baselines)})")
    for name in names:
        if name.startswith("qgzoo"):
            print(f"  {name:{width}} / {baseline}: {rate[name] / rate[baseline]:5.2f} wall, "
                  f"{cpu_rate[name] / cpu_rate[baseline]:5.2f} per CPU-second")
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end")
    ratio = rate["qgzoo double advance"] / rate[baseline]
    print(f"headline: qgzoo double-precision advance against {baseline}, wall-clock medians")
    print(f"ratio qgzoo/{label} = {ratio:.2f} trajectory-steps/s (target >= 2)")


if __name__ == "__main__":
    main()
