"""The main job: train the small default experiment and compare held-out rollouts."""

from __future__ import annotations

import pathlib
import time

from qgzoo.evaluate import heldout_rollout_error
from qgzoo.networks import NoClosure
from qgzoo.presets import small_experiment
from qgzoo.generate import load_reference
from qgzoo.trainer import Setup, train

HORIZONS = (10, 50)


def main(quick: bool = False, out: str | pathlib.Path = "runs/demo") -> dict:
    """Train online, then print held-out rollout errors of no, untrained and trained closure."""
    experiment = small_experiment(steps=100 if quick else 400)
    print(f"qgzoo demo: eddy {experiment.reference.hires_nx} -> {experiment.reference.lores_nx}, "
          f"{experiment.network.kind} trained online on {experiment.training.rollout_steps}-step "
          f"rollouts, {experiment.training.steps} updates")
    start = time.perf_counter()
    data = load_reference(experiment.reference, experiment.coarsener)
    trained = train(experiment, out, data=data)
    stats, test = data.split("train").stats(), data.split("test")
    candidates = {
        "no parameterization": NoClosure(),
        "untrained network": Setup.build(experiment, stats).parameterization,
        "trained network": trained.parameterization,
    }
    errors = {name: [heldout_rollout_error(experiment, p, test, stats, rollout_steps=T)
                     for T in HORIZONS] for name, p in candidates.items()}
    held_out = list(experiment.reference.split_runs()["test"])
    print(f"\nHeld-out rollout error (test runs {held_out}; resolved-scale state MSE / var(q)):")
    header = "".join(f"{f'T = {T}':>22}" for T in HORIZONS)
    print(f"{'':22}{header}")
    baseline = errors["no parameterization"]
    for name, values in errors.items():
        cells = "".join(f"{v:>12.3e} (x{v / b:4.2f})" for v, b in zip(values, baseline))
        print(f"{name:22}{cells}")
    print(f"\nSaved to {out} in {time.perf_counter() - start:.0f} s "
          f"({trained.skipped} updates skipped).")
    return errors
