"""Online calibration: the shared trainer fits the constants through the rollout."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import qgzoo
from qgzoo.data.reference import SMALL_REFERENCE
from qgzoo.training.trainer import Setup

ROLLOUT_STEPS = 5


def experiment(trainable, steps, learning_rate=3e-2):
    return qgzoo.Experiment(
        reference=SMALL_REFERENCE,
        coarsener={"kind": "operator1"},
        network={"kind": "backscatter_biharmonic", "trainable": list(trainable)},
        loss={"kind": "state_mse"},
        stepper={"kind": "ab3", "dt": 3600.0},
        optimizer={"name": "adam", "learning_rate": learning_rate},
        training={"rollout_steps": ROLLOUT_STEPS, "batch_size": 8, "steps": steps},
    )


def fixed_window_loss(exp, data, parameterization, n_windows=32):
    """Mean loss of ``parameterization`` on the same training windows, whatever it is."""
    train = data.split("train")
    setup = Setup.from_experiment(exp, train.stats())
    rng = np.random.default_rng(2024)
    n_runs, n_samples = train.fields["q"].shape[:2]
    runs = rng.integers(n_runs, size=n_windows)
    starts = rng.integers(n_samples - ROLLOUT_STEPS, size=n_windows)
    q = jnp.asarray(np.stack([np.asarray(train.fields["q"][r, s:s + ROLLOUT_STEPS + 1])
                              for r, s in zip(runs, starts)]))
    unused_forcing = jnp.zeros_like(q)  # state_mse does not look at forcings
    return float(eqx.filter_jit(setup.batch_loss)(
        *eqx.partition(parameterization, eqx.is_array), q, unused_forcing,
        jnp.zeros((n_windows, 2), jnp.uint32)))


def test_online_calibration_moves_the_constants_and_lowers_the_loss(small_data):
    exp = experiment(["smag_constant", "back_constant"], steps=30)
    trained = qgzoo.train(exp, data=small_data, progress=False)
    assert trained.skipped == 0 and len(trained.history) == 30
    initial = exp.network.build(None, key=jax.random.key(0))
    before, after = initial.constants(), trained.parameterization.constants()
    assert before == {"smag_constant": 0.08, "back_constant": 0.99}
    for name in before:  # each moved by more than 5%: log factors beyond +-0.05
        assert abs(np.log(after[name] / before[name])) > 0.05, (name, before, after)
    loss_before = fixed_window_loss(exp, small_data, initial)
    loss_after = fixed_window_loss(exp, small_data, trained.parameterization)
    assert loss_after < (1 - 1e-3) * loss_before, (loss_before, loss_after, after)


def test_constants_not_listed_stay_fixed_and_the_trained_ones_reload(small_data, tmp_path):
    exp = experiment(["back_constant"], steps=3, learning_rate=1e-1)
    trained = qgzoo.train(exp, out=tmp_path, data=small_data, progress=False)
    closure = trained.parameterization
    assert type(closure.smag_constant) is float and closure.smag_constant == 0.08
    assert closure.constants()["back_constant"] != 0.99
    reloaded = qgzoo.load(tmp_path).parameterization
    assert reloaded.constants() == closure.constants()
