"""Peak memory of a gradient through a long rollout: T = 400 against T = 40.

The memory is XLA's compiled temporaries of the jitted gradient
(``compile().memory_analysis().temp_size_in_bytes``): what backpropagation
keeps alive besides the arguments and outputs. It is read from the compiled
program, so nothing runs and the numbers do not depend on the machine's load.

- qgzoo: ``Setup.batch_loss`` (which calls ``qgzoo.simulate.rollout.rollout_loss``, a
  scan over checkpointed chunks of ``checkpoint_chunk`` samples) differentiated
  with respect to the trainable parameters; its memory should grow with
  T / chunk + chunk, far slower than T.
- plain scan, for context: the same parameterized model and loss in a plain
  ``jax.lax.scan`` that returns every state; backpropagation stores every step.

    .venv/bin/python benchmarks/rollout_memory.py                 # 64 x 64, batch 4, T 40 / 400
    .venv/bin/python benchmarks/rollout_memory.py --chunk 20
"""

from __future__ import annotations

import argparse

import qgzoo  # noqa: I001  (first: it switches on float64, which pyqg-jax needs)

import equinox as eqx
import jax
import jax.numpy as jnp

from qgzoo.components.networks import trainable
from qgzoo.core.fields import FieldStats
from qgzoo.simulate.rollout import initial_state
from qgzoo.training.trainer import Setup

MIB = 2.0**20


def make_setup(args, rollout_steps: int) -> Setup:
    experiment = qgzoo.Experiment(
        reference=dict(config="eddy", hires_nx=2 * args.nx, lores_nx=args.nx,
                       n_samples=max(400, rollout_steps + 1)),
        coarsener={"kind": "operator1"},
        network={"kind": "cnn", "channels": list(args.channels),
                 "kernel_sizes": [args.kernel] * (len(args.channels) + 1)},
        loss={"kind": "state_mse"},
        stepper={"kind": "ab3", "dt": 3600.0},
        training={"rollout_steps": rollout_steps, "batch_size": args.batch_size,
                  "checkpoint_chunk": args.chunk},
    )
    if experiment.steps_per_sample != 1:
        raise SystemExit("the plain scan takes one model step per sample")
    # Memory depends on shapes only: unit statistics stand in for the data's.
    return Setup.from_experiment(experiment, FieldStats.placeholder())


def plain_scan_loss(setup: Setup, static):
    """Batch loss of a plain (non-checkpointed) scan that returns every state."""
    def batch_loss(params, q_batch, forcing_batch):
        model = setup.model(eqx.combine(params, static))

        def window_loss(q_window):
            def one_step(state, _):
                state = model.step_model(state)
                return state, state.state.model_state.q

            _, q_pred = jax.lax.scan(one_step, initial_state(model, q_window[0]),
                                     length=q_window.shape[0] - 1)
            return jnp.mean(jax.vmap(setup.loss.state_term)(q_pred, q_window[1:]))

        return jnp.mean(jax.vmap(window_loss)(q_batch))
    return batch_loss


def temp_bytes(loss_fn, params, q, forcing) -> int:
    """Temporaries of the compiled gradient of ``loss_fn`` with respect to ``params``."""
    compiled = jax.jit(jax.grad(loss_fn)).lower(params, q, forcing).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        raise SystemExit(f"this backend ({jax.default_backend()}) reports no memory analysis")
    return stats.temp_size_in_bytes


def measure(args, rollout_steps: int) -> tuple[float, float]:
    """(qgzoo, plain scan) temporaries in MiB for windows of ``rollout_steps`` samples."""
    setup = make_setup(args, rollout_steps)
    params, static = eqx.partition(setup.parameterization, trainable(setup.parameterization))
    dtype = setup.lores.filtr.dtype
    shape = (args.batch_size, rollout_steps + 1, 2, args.nx, args.nx)
    q = jax.ShapeDtypeStruct(shape, dtype)
    forcing = jax.ShapeDtypeStruct(shape, dtype)

    def qgzoo_loss(params, q_batch, forcing_batch):
        keys = jnp.zeros((q_batch.shape[0], 2), jnp.uint32)  # a deterministic closure
        return setup.batch_loss(params, static, q_batch, forcing_batch, keys)

    return (temp_bytes(qgzoo_loss, params, q, forcing) / MIB,
            temp_bytes(plain_scan_loss(setup, static), params, q, forcing) / MIB)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nx", type=int, default=64, help="low-resolution grid points per side")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--short", type=int, default=40, help="short rollout T (samples)")
    parser.add_argument("--long", type=int, default=400, help="long rollout T (samples)")
    parser.add_argument("--chunk", type=int, default=10,
                        help="qgzoo's training.checkpoint_chunk (samples per remat chunk)")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--kernel", type=int, default=5)
    args = parser.parse_args(argv)

    print(f"jax {jax.__version__} on {jax.default_backend()}: eddy {args.nx} x {args.nx}, "
          f"batch {args.batch_size}, CNN {args.channels} {args.kernel}x{args.kernel}, AB3, "
          f"float64 state, checkpoint_chunk {args.chunk}")
    results = {}
    for steps in (args.short, args.long):
        results[steps] = measure(args, steps)
        qg_mib, plain_mib = results[steps]
        print(f"T = {steps:4d}: qgzoo rollout {qg_mib:8.1f} MiB   plain scan {plain_mib:8.1f} MiB "
              "(compiled temporaries of the gradient)")
    (short_q, short_p), (long_q, long_p) = results[args.short], results[args.long]
    print(f"plain scan T={args.long}/T={args.short} = {long_p / short_p:.2f}; "
          f"qgzoo/plain at T={args.long} = {long_q / long_p:.3f}")
    print(f"ratio qgzoo T={args.long}/T={args.short} = {long_q / short_q:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
