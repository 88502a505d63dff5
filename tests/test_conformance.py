"""qgzoo.testing: every built-in kind conforms, and broken components are caught.

The built-in kinds come from a registry of the built-in plugin alone, so a
kind added to ``qgzoo.components`` is checked without editing this file (a kind
whose spec has required fields needs an entry in ``EXAMPLES``). Those checks
compile each component in both precisions, 5 to 60 s each on a 2-core CPU, so
they are marked slow; the tests that the kit catches broken components are not.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import pytest
from pydantic import Field
from pyqg_jax.qg_model import QGModel
from pyqg_jax.steppers import AB3Stepper

import qgzoo
from qgzoo import testing
from qgzoo.core import plugins
from qgzoo.physics import qg
from qgzoo.components.coarseners import AbstractCoarsener, Operator1
from qgzoo.components.losses import ForcingMSE, StateMSE, Weighted
from qgzoo.components.networks import AbstractParameterization
from qgzoo.core.spec import CoarsenerSpec, LossSpec, NetworkSpec, StepperSpec
from qgzoo.core.schema import validate_component

BUILTIN = plugins.load_registry(only=[])

#: Specs of the kinds that have required fields (no default spec).
EXAMPLES = {
    ("loss", "weighted"): {"kind": "weighted", "terms": [{"weight": 2.0,
                                                          "loss": {"kind": "state_mse"}}]},
    ("network", "stochastic"): {"kind": "stochastic", "correlation_steps": 3.0,
                                "mean": {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]}},
}

#: Non-default variants worth checking as well.
VARIANTS = [
    ("network", {"kind": "cnn", "inputs": ["q", "u", "v"], "channels": [8], "kernel_sizes": [3, 3],
                 "norm": "affine"}),
    ("network", {"kind": "mlp", "inputs": ["q", "u"], "stencil": 5, "width": 16, "depth": 1}),
    ("loss", {"kind": "weighted", "terms": [{"weight": 0.5, "loss": {"kind": "forcing_mse"}}]}),
    ("loss", {"kind": "weighted", "terms": [{"loss": {"kind": "state_mse"}},
                                            {"weight": 0.5, "loss": {"kind": "forcing_mse"}}]}),
    ("loss", {"kind": "state_mse", "scales": "all"}),
    ("stepper", {"kind": "euler", "dt": 1800.0}),
    ("stepper", {"kind": "ab3", "dt": 7200.0}),
]


@pytest.fixture(autouse=True)
def builtin_registry():
    """The built-in kinds are the current registry during each test."""
    old = plugins.use_registry(BUILTIN)
    yield
    plugins.use_registry(old)


def default_spec(registration):
    value = EXAMPLES.get((registration.category, registration.kind), {"kind": registration.kind})
    return validate_component(registration.category, value)


@pytest.mark.slow
@pytest.mark.parametrize("registration", BUILTIN.registrations(),
                         ids=lambda r: f"{r.category}-{r.kind}")
def test_builtin_kind_conforms(registration):
    testing.check_component(default_spec(registration))


@pytest.mark.slow
@pytest.mark.parametrize("category, value", VARIANTS,
                         ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_builtin_variant_conforms(category, value):
    testing.check_component(validate_component(category, value))


def test_random_q_is_realistic_and_in_the_model_dtype():
    for precision, dtype in (("single", jnp.float32), ("double", jnp.float64)):
        model = qg.make_model(qg.PRESETS["eddy"], 16, precision)
        q = testing.random_q(model, jax.random.key(0))
        assert q.shape == (2, 16, 16) and q.dtype == dtype
        assert jnp.allclose(jnp.std(q, axis=(1, 2)), jnp.asarray(testing.Q_AMPLITUDE),
                            rtol=1e-5)
        assert jnp.allclose(jnp.mean(q, axis=(1, 2)), 0.0, atol=1e-12)
        # Red: the large scales hold more of the variance than a white field's share.
        power = jnp.abs(jnp.fft.rfftn(q[0])) ** 2
        assert power[:3, :3].sum() > 0.1 * power.sum()


# ----------------------------------------------------------------------------
# Broken components: each breaks one property, and the kit names it.


def assert_caught(spec, *words, **options):
    with pytest.raises(AssertionError) as caught:
        testing.check_component(spec, registered=False, **options)
    message = str(caught.value)
    assert spec.kind in message, message
    for word in words:
        assert word in message, message
    return message


class NoDownsampling(AbstractCoarsener):
    hires: QGModel
    lores: QGModel

    def coarsen(self, field):
        return field  # (nz, N, N), not (nz, n, n)


class NoDownsamplingSpec(CoarsenerSpec):
    kind: Literal["broken_shape"] = "broken_shape"

    def build(self, hires, lores):
        return NoDownsampling(hires, lores)


class LossyRoundTripSpec(CoarsenerSpec):
    kind: Literal["broken_round_trip"] = "broken_round_trip"
    # Excluded from dumps: a saved experiment would silently come back with 2.0.
    width: float = Field(2.0, gt=0, exclude=True, description="filter width in grid spacings")

    def build(self, hires, lores):
        return Operator1(hires, lores)


class Float32Forcing(AbstractParameterization):
    def q_forcing(self, full_state, model):
        return jnp.zeros(full_state.q.shape, jnp.float32)


class Float32ForcingSpec(NetworkSpec):
    kind: Literal["broken_dtype"] = "broken_dtype"

    def build(self, stats, *, key, target="q_forcing_total"):
        return Float32Forcing()


class NaNForcing(AbstractParameterization):
    def q_forcing(self, full_state, model):
        return jnp.full_like(full_state.q, jnp.nan)


class NaNForcingSpec(NetworkSpec):
    kind: Literal["broken_nan"] = "broken_nan"

    def build(self, stats, *, key, target="q_forcing_total"):
        return NaNForcing()


class OffsetMSE(StateMSE):
    def state_term(self, q_pred, q_ref):
        return super().state_term(q_pred, q_ref) + 1.0


class OffsetMSESpec(LossSpec):
    kind: Literal["broken_offset"] = "broken_offset"

    def needs_rollout(self):
        return True

    def build(self, stats, lores, target="q_forcing_total"):
        return OffsetMSE(stats.std["q"] ** 2)


class ForgetsRolloutSpec(LossSpec):
    """Scores states and forcings but says it needs forcings only."""

    kind: Literal["broken_needs"] = "broken_needs"

    def needs_forcing(self):
        return True

    def build(self, stats, lores, target="q_forcing_total"):
        return Weighted((StateMSE(stats.std["q"] ** 2), ForcingMSE(stats.std[target] ** 2)),
                        (1.0, 1.0))


class NeedsNothingSpec(LossSpec):
    kind: Literal["broken_needs_nothing"] = "broken_needs_nothing"

    def build(self, stats, lores, target="q_forcing_total"):
        return ForcingMSE(stats.std[target] ** 2)


class FixedStepSpec(StepperSpec):
    kind: Literal["broken_dt"] = "broken_dt"

    def build(self):
        return AB3Stepper(dt=3600.0)  # ignores self.dt


def test_coarsener_of_the_wrong_shape_is_caught():
    message = assert_caught(NoDownsamplingSpec(), "coarsener", "coarsen shape and dtype",
                            "(2, 32, 32)", "(2, 16, 16)")
    assert message.startswith("coarsener kind 'broken_shape' (NoDownsamplingSpec)")


def test_spec_that_loses_a_field_in_its_dump_is_caught():
    assert LossyRoundTripSpec().model_dump() == {"kind": "broken_round_trip"}
    assert_caught(LossyRoundTripSpec(width=3.0), "round trip", "width=2.0")


def test_network_returning_float32_for_a_float64_model_is_caught():
    assert_caught(Float32ForcingSpec(), "network", "q_forcing shape and dtype",
                  "double precision", "dtype float32, expected float64")


def test_network_returning_nans_is_caught():
    assert_caught(NaNForcingSpec(), "q_forcing", "not finite")


def test_loss_not_zero_for_identical_fields_is_caught():
    assert_caught(OffsetMSESpec(), "loss", "state_term", "identical fields", "not zero")
    # Allowed when the author says only that identical fields score lowest.
    testing.check_component(OffsetMSESpec(), registered=False, identical_is_zero=False,
                            normalised=False, precisions=("double",))


def test_loss_whose_term_the_trainer_would_skip_is_caught():
    assert_caught(ForgetsRolloutSpec(), "state_term value", "needs_rollout() is False",
                  "never calls it")
    assert_caught(NeedsNothingSpec(), "needs_rollout or needs_forcing", "never call")


def test_stepper_that_ignores_its_dt_is_caught():
    assert_caught(FixedStepSpec(dt=1800.0), "stepper", "time after each step",
                  precisions=("double",))
    testing.check_component(FixedStepSpec(dt=3600.0), registered=False,
                            precisions=("double",))


def test_unregistered_spec_is_reported_unless_allowed():
    with pytest.raises(AssertionError, match="registered: kind 'broken_needs' is not in "
                       "the current registry .*registered=False"):
        testing.check_spec(ForgetsRolloutSpec())
    testing.check_spec(ForgetsRolloutSpec(), registered=False)


def test_spec_registered_by_two_plugins_is_reported():
    class Plugin:
        def __init__(self, spec_class):
            self.spec_class = spec_class

        @qgzoo.hookimpl
        def register_components(self, register):
            register(self.spec_class)

    registry = plugins.load_registry(only=[])
    registry.add_plugin(Plugin(LossyRoundTripSpec), "one")
    registry.add_plugin(Plugin(LossyRoundTripSpec), "two")
    plugins.use_registry(registry)
    with pytest.raises(AssertionError, match="registered by both one .* and two"):
        testing.check_spec(LossyRoundTripSpec())
