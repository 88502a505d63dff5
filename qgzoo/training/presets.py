"""Named experiments: the small default the demo trains, and the seed's workflow."""

from qgzoo.data.reference import SMALL_REFERENCE
from qgzoo.training.experiment import Experiment


def small_experiment(steps: int = 400) -> Experiment:
    """Online training of a small CNN on the small eddy reference (minutes on a CPU)."""
    return Experiment(
        reference=SMALL_REFERENCE,
        coarsener={"kind": "operator1"},
        network={"kind": "cnn", "channels": [8], "kernel_sizes": [3, 3]},
        loss={"kind": "state_mse"},
        stepper={"kind": "ab3", "dt": 3600.0},
        optimizer={"name": "adam", "learning_rate": 1e-3},
        training={"rollout_steps": 10, "batch_size": 8, "steps": steps},
    )


def seed_experiment() -> Experiment:
    """The seed example's workflow (eddy 128 -> 32, operator1, small CNN, AB3, 8 x 10 steps)."""
    return Experiment(
        reference=dict(hires_nx=128, lores_nx=32, n_runs=8, n_test_runs=2,
                       spinup_steps=2 * 8760, n_samples=400),
        network={"kind": "cnn", "channels": [5, 5], "kernel_sizes": [3, 3, 3]},
        training={"rollout_steps": 10, "batch_size": 8, "steps": 500, "checkpoint_every": 50},
    )


#: Experiment presets for ``qgzoo spec NAME``.
EXPERIMENTS = {"seed": seed_experiment, "small": small_experiment}
