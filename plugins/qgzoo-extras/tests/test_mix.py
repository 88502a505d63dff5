"""Components of three distributions in one experiment: qgzoo-filters' operator3,
qgzoo-physical's backscatter_biharmonic with trainable constants (or the built-in
cnn), and this plugin's spectral loss inside the built-in weighted loss."""

import importlib.metadata

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qgzoo
from qgzoo.core import plugins
from qgzoo.data.reference import SMALL_REFERENCE
from qgzoo.training.trainer import Setup

ROLLOUT = 4


def entry_point_of(distribution):
    """The name of ``distribution``'s entry point in the qgzoo group, or None."""
    for ep in importlib.metadata.entry_points(group="qgzoo"):
        if ep.dist is not None and ep.dist.name == distribution:
            return ep.name
    return None


@pytest.fixture(scope="module")
def mixed_registry(extras_registry):
    needed = {"qgzoo-filters": entry_point_of("qgzoo-filters"),
              "qgzoo-physical": entry_point_of("qgzoo-physical")}
    old = plugins.use_registry(plugins.load_registry(
        only=["extras", *[name for name in needed.values() if name]]))
    yield needed
    plugins.use_registry(old)


def require(registry, distribution, category, kind):
    reg = registry.kinds[category].get(kind)
    if reg is None or reg.distribution != distribution:
        problems = "; ".join(f"{p.plugin}: {p.message}" for p in registry.problems) or "none"
        pytest.skip(f"{category} kind {kind!r} from {distribution} is not available "
                    f"(pip install -e plugins/{distribution}); plugin problems: {problems}")


@pytest.fixture(scope="module")
def operator3_data(mixed_registry, small_data):
    require(plugins.registry(), "qgzoo-filters", "coarsener", "operator3")
    return small_data({"kind": "operator3"})


def experiment(network, learning_rate):
    return qgzoo.Experiment(
        reference=SMALL_REFERENCE,
        coarsener={"kind": "operator3"},
        network=network,
        loss={"kind": "weighted", "terms": [{"loss": {"kind": "state_mse"}},
                                            {"loss": {"kind": "spectral"}}]},
        stepper={"kind": "ab3", "dt": 3600.0},
        optimizer={"learning_rate": learning_rate},
        training={"rollout_steps": ROLLOUT, "batch_size": 4, "steps": 10},
    )


def held_loss(exp, data):
    """The loss of a parameterization on 16 fixed training windows (not the trainer's draws),
    and the untrained parameterization."""
    train = data.split("train")
    setup = Setup.from_experiment(exp, train.stats())
    rng = np.random.default_rng(123)
    runs = rng.integers(train.n_runs, size=16)
    starts = rng.integers(train.n_samples - ROLLOUT, size=16)
    q = jnp.asarray(train.windows("q", runs, starts, ROLLOUT + 1))
    forcing = jnp.asarray(train.windows(exp.training.forcing_target, runs, starts, ROLLOUT + 1))

    @eqx.filter_jit
    def evaluate(parameterization):
        return jnp.mean(jax.vmap(lambda a, b: setup.window_loss(
            parameterization, a, b, jax.random.PRNGKey(0)))(q, forcing))

    return lambda parameterization: float(evaluate(parameterization)), setup.parameterization


def trains_and_lowers_its_loss(exp, data):
    trained = qgzoo.train(exp, data=data, progress=False)
    assert trained.skipped == 0 and all(h["finite"] for h in trained.history)
    evaluate, initial = held_loss(exp, data)
    before, after = evaluate(initial), evaluate(trained.parameterization)
    print(f"{exp.network.kind}: loss on fixed windows {before:.4g} -> {after:.4g}")
    assert after < 0.9 * before
    return trained


@pytest.mark.slow
def test_three_distributions_train_together(mixed_registry, operator3_data):
    """Measured: 3.29e-5 -> 1.91e-5 in 10 updates; C_S 0.08 -> 0.13, C_B 0.99 -> 1.63."""
    registry = plugins.registry()
    require(registry, "qgzoo-physical", "network", "backscatter_biharmonic")
    exp = experiment({"kind": "backscatter_biharmonic",
                      "trainable": ["smag_constant", "back_constant"]}, learning_rate=0.05)
    origins = {registry.kinds[c][k].distribution for c, k in [
        ("coarsener", "operator3"), ("network", "backscatter_biharmonic"),
        ("loss", "spectral")]}
    assert origins == {"qgzoo-filters", "qgzoo-physical", "qgzoo-extras"}
    trained = trains_and_lowers_its_loss(exp, operator3_data)
    print("trained constants:", trained.parameterization.constants())


@pytest.mark.slow
def test_with_the_builtin_cnn_when_qgzoo_physical_is_missing(mixed_registry, operator3_data):
    """The fallback mix (qgzoo-filters, qgzoo, qgzoo-extras); measured: 1.37e-4 -> 3.0e-5."""
    if "backscatter_biharmonic" in plugins.registry().kinds["network"]:
        pytest.skip("qgzoo-physical is installed: test_three_distributions_train_together "
                    "trains the three-distribution mix instead")
    exp = experiment({"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]},
                     learning_rate=3e-3)
    trains_and_lowers_its_loss(exp, operator3_data)
