"""Named experiments: the small default the demo trains, and the seed's workflow."""

from qgzoo.experiment import Experiment

#: eddy, 64 -> 16, 4 runs (1 held out), spun up 3 years (kinetic energy has
#: levelled off by then at nx = 64), then 300 hourly samples per run.
SMALL_REFERENCE = dict(hires_nx=64, lores_nx=16, n_runs=4, n_test_runs=1,
                       spinup_steps=3 * 8760, n_samples=300)


#: eddy, 128 -> 32 (Operator1 and Operator2), 8 runs (5 train, 1 validation,
#: 2 test) spun up 3 years, then one year sampled every 12 hours.
EDDY_128_32 = dict(hires_nx=128, lores_nx=32, n_runs=8, n_val_runs=1, n_test_runs=2,
                   spinup_steps=3 * 8760, n_samples=720, sample_interval=12,
                   coarseners=[{"kind": "operator1"}, {"kind": "operator2"}])

#: jet, 128 -> 32, for transfer tests: 4 runs (2 held out) spun up 7 years, as
#: the jet's kinetic energy still grows exponentially after 3 (up to 4 years at
#: nx = 128 before the instability saturates); then one year every 12 hours.
JET_128_32 = {**EDDY_128_32, "config": "jet", "n_runs": 4, "n_val_runs": 0,
              "spinup_steps": 7 * 8760}

#: Reference presets for ``qgzoo data build NAME``.
REFERENCES = {"eddy-64-16": SMALL_REFERENCE, "eddy-128-32": EDDY_128_32,
              "jet-128-32": JET_128_32}


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
