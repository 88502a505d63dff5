"""The closures against pyqg-jax's own implementations, and inside a pyqg-jax model.

pyqg-jax's u, v closures add ik dv_h - il du_h to dq/dt as they are; ours
return a real field, whose transform holds the Hermitian part of the Nyquist
column (k = nx/2) only, the part a real field can carry. Both therefore agree
exactly in real space and everywhere in spectral space but on that column,
where ours is the projection of pyqg-jax's; the model's filter multiplies
that column by ~1e-15 at each step, so runs agree too.
"""

import functools

import jax
import numpy as np
import pytest
from jax.tree_util import Partial
from pyqg_jax.parameterizations import (
    ParameterizedModel, backscatterbiharmonic, smagorinsky, zannabolton2020)
from pyqg_jax.steppers import AB3Stepper, SteppedModel

from qgzoo import NoClosure, validate_component

RTOL = 1e-10

#: (kind, spec constants, pyqg-jax module, its keyword arguments)
CASES = {
    "smagorinsky-default": ("smagorinsky", {}, smagorinsky, {"constant": 0.1}),
    "smagorinsky-ross": ("smagorinsky", {"constant": 0.15}, smagorinsky, {"constant": 0.15}),
    "backscatter-default": ("backscatter_biharmonic", {}, backscatterbiharmonic,
                            {"smag_constant": 0.08, "back_constant": 0.99}),
    "backscatter-ross": ("backscatter_biharmonic",
                         {"smag_constant": 0.007**0.5, "back_constant": 1.2},
                         backscatterbiharmonic,
                         {"smag_constant": 0.007**0.5, "back_constant": 1.2}),
    "zanna_bolton-default": ("zanna_bolton", {}, zannabolton2020, {"kappa": -46761284}),
    "zanna_bolton-half": ("zanna_bolton", {"kappa": -23380642.0}, zannabolton2020,
                          {"kappa": -23380642.0}),
}
CONSTANTS = {"smagorinsky": ["constant"], "backscatter_biharmonic": ["smag_constant",
             "back_constant"], "zanna_bolton": ["kappa"]}


def build(kind, constants, trainable=()):
    spec = validate_component("network", {"kind": kind, **constants, "trainable": list(trainable)})
    return spec.build(None, key=jax.random.key(0))


# jax.jit, not eqx.filter_jit: the constants (Python floats) are traced, so one
# compilation serves every value.
@jax.jit
def pyqg_jax_forcing_h(param_func, model, state):
    """What pyqg-jax's closure adds to dq_h/dt."""
    updates, _ = param_func(state, None, model)
    return updates.qh - model.get_updates(state).qh


@jax.jit
def our_forcing(closure, model, state):
    """Our closure's q forcing, and what it adds to dq_h/dt as a pyqg-jax param_func."""
    updates, _ = closure(state, None, model)
    return (closure.q_forcing(model.get_full_state(state), model),
            updates.qh - model.get_updates(state).qh)


def to_real(model, field_h):
    return np.fft.irfft2(field_h, s=(model.ny, model.nx))


def relative_difference(ours, theirs):
    return np.abs(ours - theirs).max() / np.abs(theirs).max()


@pytest.mark.parametrize("state_name, trained", [
    ("coarse_state", False), ("model_state", False), ("coarse_state", True)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forcing_matches_pyqg_jax(case, state_name, trained, request):
    model, state = request.getfixturevalue(state_name)
    kind, constants, module, kwargs = CASES[case]
    closure = build(kind, constants, CONSTANTS[kind] if trained else ())
    ours, ours_h = map(np.asarray, our_forcing(closure, model, state))
    theirs_h = np.asarray(pyqg_jax_forcing_h(Partial(module.param_func, **kwargs), model, state))
    assert np.abs(ours).max() > 0
    assert relative_difference(ours, to_real(model, theirs_h)) < RTOL

    # As a pyqg-jax param_func: the same updates, but on the Nyquist column.
    nyquist = model.nx // 2
    scale = np.abs(theirs_h).max()
    assert np.abs(ours_h - theirs_h)[..., :nyquist].max() < RTOL * scale
    column = theirs_h[..., nyquist]
    hermitian = 0.5 * (column + np.conj(np.roll(column[..., ::-1], 1, axis=-1)))
    assert np.abs(ours_h[..., nyquist] - hermitian).max() < RTOL * scale


def test_the_q_closure_agrees_on_the_nyquist_column_too(coarse_state):
    model, state = coarse_state
    _, ours = our_forcing(build("backscatter_biharmonic", {}), model, state)
    theirs = pyqg_jax_forcing_h(Partial(backscatterbiharmonic.param_func), model, state)
    assert relative_difference(ours, theirs) < RTOL


@functools.partial(jax.jit, static_argnums=2)
def _run(model, state, steps):
    stepped = SteppedModel(model, AB3Stepper(dt=3600.0))
    start = stepped.initialize_stepper_state(model.initialize_param_state(state))
    return jax.lax.fori_loop(0, steps, lambda _, x: stepped.step_model(x), start)


def run(model, state, steps):
    """q after ``steps`` AB3 steps of the (parameterized) ``model`` from ``state``."""
    return np.asarray(_run(model, state, steps).state.model_state.q)


@pytest.mark.parametrize("case", ["smagorinsky-ross", "backscatter-ross", "zanna_bolton-default"])
def test_steps_in_a_parameterized_model_as_pyqg_jax_does(case, model_state):
    model, state = model_state
    kind, constants, module, kwargs = CASES[case]
    closure = build(kind, constants, CONSTANTS[kind])
    ours = run(ParameterizedModel(model, param_func=closure), state, 20)
    theirs = run(module.apply_parameterization(model, **kwargs), state, 20)
    plain = run(ParameterizedModel(model, param_func=NoClosure()), state, 20)  # cached
    assert np.isfinite(ours).all()
    # The closure changes the run, by what pyqg-jax's changes it.
    effect = theirs - plain
    assert np.abs(effect).max() > 1e-6 * np.abs(theirs).max()
    assert np.abs(ours - theirs).max() < 1e-8 * np.abs(effect).max()
