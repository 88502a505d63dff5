"""The wasserstein loss: W1 of grid distributions of rollout states, checked against the
exact quantile-function W1 of the metrics, a constant shift and a moved field."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError

from qgzoo.components.losses import WassersteinSpec
from qgzoo.core.schema import validate_component
from qgzoo.evaluation.metrics import flow_fields, wasserstein_1d
from qgzoo.physics import qg
from qgzoo.testing.inputs import random_q, realistic_stats

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="module")
def lores():
    return qg.make_model({}, 32)


@pytest.fixture(scope="module")
def states(lores):
    return (random_q(lores, jax.random.key(1)), random_q(lores, jax.random.key(2)))


def term(lores, *quantities):
    """The state term of the loss on ``quantities``, compiled."""
    return eqx.filter_jit(WassersteinSpec(quantities=quantities).build(
        realistic_stats(), lores).state_term)


def test_each_quantity_scores_the_exact_w1_of_the_metrics_over_the_reference_std(lores, states):
    pred, ref = states
    fields_pred, fields_ref = flow_fields(lores, pred), flow_fields(lores, ref)
    by_metric = {"q": lambda f: f["q"], "u": lambda f: f["u"], "v": lambda f: f["v"],
                 "KE": lambda f: f["u"]**2 + f["v"]**2, "enstrophy": lambda f: f["zeta"]**2}
    expected = {}
    for name, of in by_metric.items():
        a, b = np.asarray(of(fields_pred)), np.asarray(of(fields_ref))
        expected[name] = np.mean([wasserstein_1d(a[z], b[z]) / np.std(b[z]) for z in range(2)])
        assert float(term(lores, name)(pred, ref)) == pytest.approx(expected[name], rel=1e-10), name
    # Several quantities: the mean of their terms.
    both = float(term(lores, "q", "KE")(pred, ref))
    assert both == pytest.approx((expected["q"] + expected["KE"]) / 2, rel=1e-10)


def test_a_moved_field_scores_zero_and_a_shifted_one_its_shift(lores, states):
    _, ref = states
    moved = jnp.roll(ref, (5, -3), axis=(-2, -1))
    assert float(term(lores, "q", "u", "v", "KE", "enstrophy")(moved, ref)) < 1e-12
    shift = jnp.array([2e-6, -3e-7])[:, None, None]
    expected = np.mean(np.abs(np.asarray(shift).ravel()) / np.std(np.asarray(ref), axis=(-2, -1)))
    assert float(term(lores, "q")(ref + shift, ref)) == pytest.approx(expected, rel=1e-9)
    # The MSE of the moved field is of the order of the field's variance: it is not phase-blind.
    assert float(jnp.mean((moved - ref)**2) / jnp.var(ref)) > 0.5


def test_its_gradient_is_finite_and_moves_the_state_towards_the_reference(lores, states):
    pred, ref = states
    distance = term(lores, "q", "KE", "enstrophy")
    grad = jax.grad(distance)(pred, ref)
    assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).max()) > 0
    # A small step down the gradient lowers the distance.
    step = 1e-3 * jnp.std(pred) / jnp.sqrt(jnp.mean(grad**2))
    assert float(distance(pred - step * grad, ref)) < float(distance(pred, ref))


def test_bad_quantities_are_refused_by_name():
    with pytest.raises(ValidationError, match="quantities repeat"):
        validate_component("loss", {"kind": "wasserstein", "quantities": ["q", "q"]})
    with pytest.raises(ValidationError, match="quantities"):
        validate_component("loss", {"kind": "wasserstein", "quantities": ["speed"]})
    with pytest.raises(ValidationError, match="quantities"):
        validate_component("loss", {"kind": "wasserstein", "quantities": []})


def test_a_pooled_window_scores_the_w1_of_all_its_states_values(lores):
    keys = jax.random.split(jax.random.key(5), 6)
    pred = jnp.stack([random_q(lores, k) for k in keys[:3]])
    ref = jnp.stack([random_q(lores, k) for k in keys[3:]])
    loss = WassersteinSpec(quantities=("q", "KE"), pool="window").build(realistic_stats(), lores)
    fields_pred = [flow_fields(lores, q) for q in pred]
    fields_ref = [flow_fields(lores, q) for q in ref]
    expected = []
    for of in (lambda f: f["q"], lambda f: f["u"]**2 + f["v"]**2):
        for z in range(2):
            a = np.concatenate([np.asarray(of(f))[z].ravel() for f in fields_pred])
            b = np.concatenate([np.asarray(of(f))[z].ravel() for f in fields_ref])
            expected.append(wasserstein_1d(a, b) / np.std(b))
    window = eqx.filter_jit(loss.window_term)
    assert float(window(pred, ref)) == pytest.approx(np.mean(expected), rel=1e-10)
    # blind to the order of the states in time, unlike the states scored one by one
    assert float(window(pred[::-1], ref)) == pytest.approx(float(window(pred, ref)), rel=1e-12)
    assert float(loss.state_term(pred[0], ref[0])) == 0.0
    one_by_one = WassersteinSpec(quantities=("q", "KE")).build(realistic_stats(), lores)
    assert float(one_by_one.window_term(pred, ref)) == 0.0
    by_state = [float(one_by_one.state_term(p, r)) for p, r in zip(pred, ref)]
    assert np.mean(by_state) != pytest.approx(float(window(pred, ref)), rel=1e-3)
