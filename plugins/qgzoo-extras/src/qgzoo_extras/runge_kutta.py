"""Explicit Runge-Kutta steppers (RK4, SSPRK3) for pyqg-jax models.

A Runge-Kutta step evaluates the model once per stage, so it cannot be a
pyqg-jax ``Stepper``, whose ``apply_updates`` receives one model evaluation per
step. Instead the built stepper provides ``stepped_model(model)``, a drop-in
for ``pyqg_jax.steppers.SteppedModel`` over pyqg-jax's own ``StepperState``
(state, t, tc); see ``qgzoo.parameterized_model``.

Two conventions, chosen to match pyqg-jax's steppers:

- the model's ``postprocess_state`` (pyqg's exponential filter) is applied once,
  after each full step, never to the stage states;
- leaves wrapped in ``NoStepValue`` (a ``ParameterizedModel``'s ``param_aux``)
  are not integrated. Every stage sees the value at the start of the step, and
  the new state takes the value returned by the first stage, the evaluation at
  the start of the step: exactly what Euler or AB3 store, so a parameterization
  that advances its aux (a PRNG key, a counter) advances it once per step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from pyqg_jax.steppers import NoStepValue, StepperState


class ButcherTableau(NamedTuple):
    """Coefficients of an explicit scheme: stage i uses ``a[i]`` (i entries), weights ``b``."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


RK4 = ButcherTableau(a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
                     b=(1 / 6, 1 / 3, 1 / 3, 1 / 6))
#: Shu and Osher's three-stage, third-order strong-stability-preserving scheme.
SSPRK3 = ButcherTableau(a=((), (1.0,), (0.25, 0.25)), b=(1 / 6, 1 / 6, 2 / 3))


def _is_nostep(leaf) -> bool:
    return isinstance(leaf, NoStepValue)


def combine(state, increments, weights, nostep_source):
    """``state + sum_i weights[i] * increments[i]`` leaf by leaf (weights in seconds).

    Leaves of ``state`` wrapped in ``NoStepValue`` are not integrated: the value
    at the same place in ``nostep_source`` is taken instead.
    """
    def leaf(value, source, *incs):
        if _is_nostep(value):
            return source
        for weight, inc in zip(weights, incs):
            if weight != 0.0:
                value = value + weight * inc
        return value

    return jax.tree_util.tree_map(leaf, state, nostep_source, *increments, is_leaf=_is_nostep)


class RungeKuttaStepper(eqx.Module):
    """An explicit Runge-Kutta scheme with time step ``dt`` in seconds."""

    # Static, so dt stays a weakly typed Python float: multiplying a float32 state
    # by it keeps float32, as with pyqg-jax's steppers.
    dt: float = eqx.field(static=True)
    tableau: ButcherTableau = eqx.field(static=True)

    def initialize_stepper_state(self, state) -> StepperState:
        """Wrap a model state for stepping, from time 0."""
        return StepperState(state=state, t=jnp.float32(0), tc=jnp.uint32(0))

    def advance(self, model, stepper_state: StepperState) -> StepperState:
        """One step of ``model`` (its ``get_updates``), without postprocessing."""
        y = stepper_state.state
        stages = []
        for row in self.tableau.a:
            stage_state = combine(y, stages, [self.dt * a for a in row], y)
            stages.append(model.get_updates(stage_state))
        new = combine(y, stages, [self.dt * b for b in self.tableau.b], stages[0])
        return StepperState(state=new, t=stepper_state.t + jnp.float32(self.dt),
                            tc=stepper_state.tc + 1)

    def stepped_model(self, model) -> "RungeKuttaSteppedModel":
        """``model`` stepped by this scheme, with ``SteppedModel``'s methods."""
        return RungeKuttaSteppedModel(model, self)


class RungeKuttaSteppedModel(eqx.Module):
    """A pyqg-jax model (plain or ``ParameterizedModel``) stepped by a Runge-Kutta scheme.

    Has the methods of ``pyqg_jax.steppers.SteppedModel`` and the same
    ``model`` and ``stepper`` attributes.
    """

    model: Any
    stepper: RungeKuttaStepper

    def create_initial_state(self, key, *args, **kwargs) -> StepperState:
        """A random initial state of the model, wrapped for stepping."""
        return self.initialize_stepper_state(self.model.create_initial_state(key, *args, **kwargs))

    def initialize_stepper_state(self, state, /) -> StepperState:
        """Wrap an existing model state for stepping, from time 0."""
        return self.stepper.initialize_stepper_state(state)

    def step_model(self, stepper_state: StepperState, /) -> StepperState:
        """The state one step (``dt`` seconds) later, postprocessed (filtered) once."""
        new = self.stepper.advance(self.model, stepper_state)
        return new.update(state=self.model.postprocess_state(new.state))

    def get_full_state(self, stepper_state: StepperState, /):
        """The model's full state (velocities, streamfunction, tendency) of a wrapped state."""
        return self.model.get_full_state(stepper_state.state)
