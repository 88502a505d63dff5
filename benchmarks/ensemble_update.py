"""An online update on an ensemble of rollouts against the same update on one rollout.

``qgzoo.training.trainer.make_update`` on windows of ``--rollout-steps`` samples
of 24 steps at 64 x 64 (eddy, AB3): the zoo's flux-sized CNN wrapped as a
``stochastic`` closure and trained with ``energy_score`` on ``--members`` rollouts
per window, against the same closure on 1 rollout per window with ``state_mse``
(the baseline). Both compile first; then ``--reps`` updates of each alternate, and
the ratio of the median wall times is printed: what an ensemble costs per update.

    .venv/bin/python benchmarks/ensemble_update.py --members 4
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from update_inputs import update_inputs

import qgzoo
from qgzoo.training.trainer import make_update

jax.config.update("jax_enable_x64", True)


def update_of(members: int, args):
    """A compiled update and its arguments, for ``members`` rollouts per window."""
    experiment = qgzoo.Experiment(
        reference={"config": "eddy", "hires_nx": 256, "lores_nx": 64,
                   "sample_interval": 24},
        network={"kind": "stochastic", "correlation_steps": 6,
                 "mean": {"kind": "cnn", "channels": [16, 16]}},
        loss={"kind": "energy_score" if members > 1 else "state_mse"},
        stepper={"kind": "ab3", "dt": 3600.0},
        training={"steps": 10, "batch_size": args.batch, "rollout_steps": args.rollout_steps,
                  "members": members})
    setup, optimizer, params, static, opt_state, windows = update_inputs(
        experiment, args.batch, args.rollout_steps)
    keys = jnp.asarray(np.random.default_rng(0).integers(0, 2**32, (args.batch, 2), np.uint32))
    return make_update(setup, optimizer), (params, static, opt_state, windows,
                                           jnp.zeros_like(windows), keys)


def timed(update, arguments) -> float:
    start = time.perf_counter()
    jax.block_until_ready(update(*arguments))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rollout-steps", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sides = {"ensemble": update_of(args.members, args), "one rollout": update_of(1, args)}
    for update, arguments in sides.values():
        timed(update, arguments)  # compile
    wall = {name: [] for name in sides}
    for rep in range(args.reps):
        for name in (list(sides) if rep % 2 == 0 else list(sides)[::-1]):
            wall[name].append(timed(*sides[name]))
    ensemble, one = (statistics.median(wall[name]) for name in sides)
    print(f"one update, batch {args.batch} x {args.rollout_steps} samples of 24 steps at "
          f"64 x 64: {args.members} members with energy_score {1e3 * ensemble:.0f} ms, "
          f"1 rollout with state_mse {1e3 * one:.0f} ms, ratio {ensemble / one:.2f} "
          f"(ideal {args.members})")


if __name__ == "__main__":
    main()
