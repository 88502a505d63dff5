"""Model steps inside a compiled loop and in qgzoo's StepLoop, against steps driven from Python.

For a parameterization made of convolutions XLA's CPU backend runs a model step
slower inside a compiled loop (``lax.fori_loop``) than one jitted step called
from Python. qgzoo's forward runs (online runs, long runs, the cost timer) go
through ``qgzoo.simulate.loop.StepLoop`` (compiled chunks of unrolled steps,
called from Python). Prints ms per step of all three, and the ratios to the
Python loop, per entry.

    .venv/bin/python benchmarks/loop_steps.py                     # none, cnn-offline, ross2023-fcnn
    .venv/bin/python benchmarks/loop_steps.py --steps 10 --entries cnn-offline
"""

from __future__ import annotations

import argparse
import time

import jax
from pyqg_jax.steppers import AB3Stepper

from qgzoo import zoo
from qgzoo.evaluation.benchmark import load_benchmark
from qgzoo.simulate.loop import StepLoop
from qgzoo.simulate.rollout import initial_state, parameterized_model


def ms_per_step(run, state, n_steps: int, repeats: int) -> float:
    """Best of ``repeats`` timings of ``run(state)`` (compiled first), ms per step."""
    jax.block_until_ready(run(state))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(state))
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", nargs="+", default=["none", "cnn-offline", "ross2023-fcnn"])
    parser.add_argument("--steps", type=int, default=20, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in args.entries:
        reference = zoo.experiment(name).reference
        bench = load_benchmark(f"{reference.config}-{reference.hires_nx}-{reference.lores_nx}",
                               "ross2023" if reference.lores_nx == 64 else "restarts",
                               progress=False)
        model = parameterized_model(bench.lores_model(), zoo.load(name), AB3Stepper(dt=3600.0))
        state = initial_state(model, jax.numpy.asarray(bench.initial_q[0]))
        step = jax.jit(model.step_model)

        def from_python(s):
            for _ in range(args.steps):
                s = step(s)
            return s

        in_loop = jax.jit(lambda s: jax.lax.fori_loop(0, args.steps,
                                                      lambda _, x: model.step_model(x), s))
        step_loop = StepLoop(lambda _, s, n: model.step_model(s), None, state)
        python = ms_per_step(from_python, state, args.steps, args.repeats)
        loop = ms_per_step(in_loop, state, args.steps, args.repeats)
        chunks = ms_per_step(lambda s: step_loop(s, 0, args.steps), state, args.steps,
                             args.repeats)
        print(f"{name} ({bench.reference.lores_nx}^2): from Python {python:.3g} ms/step, "
              f"in fori_loop {loop:.3g} (ratio {loop / python:.2f}), "
              f"StepLoop {chunks:.3g} (ratio {chunks / python:.2f})", flush=True)


if __name__ == "__main__":
    main()
