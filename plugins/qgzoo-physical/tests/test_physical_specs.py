"""Specs: registration, validation errors, round trips, what is stored as trainable."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pytest

import qgzoo
from qgzoo.core import plugins
from qgzoo import AbstractParameterization, trainable, validate_component
from qgzoo_physical import (
    BackscatterBiharmonicSpec, LogScaled, SmagorinskySpec, ZannaBoltonSpec)

KINDS = {"smagorinsky": SmagorinskySpec, "backscatter_biharmonic": BackscatterBiharmonicSpec,
         "zanna_bolton": ZannaBoltonSpec}


def test_kinds_are_registered_by_this_distribution():
    registry = plugins.registry()
    for kind, spec_class in KINDS.items():
        reg = registry.kinds["network"][kind]
        assert reg.spec_class is spec_class
        assert (reg.plugin, reg.distribution, reg.version) == (
            "physical", "qgzoo-physical", "0.1.0")


def test_defaults_are_pyqgs():
    assert SmagorinskySpec().constant == 0.1
    assert (BackscatterBiharmonicSpec().smag_constant,
            BackscatterBiharmonicSpec().back_constant) == (0.08, 0.99)
    assert ZannaBoltonSpec().kappa == -46761284.0


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_and_schema(kind):
    spec = validate_component("network", {"kind": kind, "trainable": KINDS[kind].constant_names})
    assert validate_component("network", spec.model_dump(mode="json")) == spec
    schema = qgzoo.schema()
    assert kind in schema["$defs"]["network"]["discriminator"]["mapping"]
    for name in KINDS[kind].constant_names:
        assert KINDS[kind].model_fields[name].description


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_unknown_trainable_name_is_an_error_listing_the_constants(kind):
    with pytest.raises(pydantic.ValidationError) as error:
        validate_component("network", {"kind": kind, "trainable": ["viscosity"]})
    message = str(error.value)
    assert "viscosity" in message
    assert all(name in message for name in KINDS[kind].constant_names)


def test_repeated_trainable_name_is_an_error():
    with pytest.raises(pydantic.ValidationError, match="repeat"):
        SmagorinskySpec(trainable=("constant", "constant"))


@pytest.mark.parametrize("kind, values", [
    ("smagorinsky", {"constant": -0.1}),
    ("smagorinsky", {"constant": 0.0}),
    ("backscatter_biharmonic", {"smag_constant": -0.08}),
    ("backscatter_biharmonic", {"back_constant": -0.5}),
    ("zanna_bolton", {"kappa": 46761284.0}),
])
def test_constants_outside_their_bounds_are_errors(kind, values):
    with pytest.raises(pydantic.ValidationError) as error:
        validate_component("network", {"kind": kind, **values})
    assert next(iter(values)) in str(error.value)


def test_no_backscatter_is_allowed_but_cannot_be_trained():
    assert BackscatterBiharmonicSpec(back_constant=0.0).back_constant == 0.0
    with pytest.raises(pydantic.ValidationError, match="back_constant = 0 cannot be trained"):
        BackscatterBiharmonicSpec(back_constant=0.0, trainable=("back_constant",))


def test_unknown_field_is_an_error():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        validate_component("network", {"kind": "smagorinsky", "C": 0.1})


def test_trainable_constants_are_float64_arrays_and_the_others_floats():
    spec = BackscatterBiharmonicSpec(smag_constant=0.0837, back_constant=1.2,
                                     trainable=("back_constant",))
    closure = spec.build(None, key=jax.random.key(0))
    assert isinstance(closure, AbstractParameterization) and isinstance(closure, eqx.Module)
    assert type(closure.smag_constant) is float and closure.smag_constant == 0.0837
    assert isinstance(closure.back_constant, LogScaled)
    assert closure.back_constant.log_factor.dtype == jnp.float64
    assert closure.constants() == {"smag_constant": 0.0837, "back_constant": 1.2}
    params, _ = eqx.partition(closure, trainable(closure))
    leaves = jax.tree.leaves(params)
    assert len(leaves) == 1 and leaves[0] is closure.back_constant.log_factor


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_nothing_is_trainable_by_default(kind):
    closure = KINDS[kind]().build(None, key=jax.random.key(0))
    params, _ = eqx.partition(closure, trainable(closure))
    assert jax.tree.leaves(params) == []


def test_a_trained_factor_scales_the_constant():
    closure = ZannaBoltonSpec(trainable=("kappa",)).build(None, key=jax.random.key(0))
    doubled = eqx.tree_at(lambda c: c.kappa.log_factor, closure, jnp.log(2.0))
    assert doubled.constants()["kappa"] == pytest.approx(2 * -46761284.0, rel=1e-15)
    assert doubled.kappa.log_factor.dtype == jnp.float64
    np.testing.assert_allclose(
        float(doubled.kappa.value), -93522568.0, rtol=1e-15)
