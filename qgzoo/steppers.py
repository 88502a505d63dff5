"""Time steppers of the low-resolution model (pyqg-jax's own)."""

from __future__ import annotations

from typing import Literal

from pyqg_jax import steppers

from qgzoo.spec import StepperSpec


class AB3Spec(StepperSpec):
    """Third-order Adams-Bashforth, pyqg's scheme (Euler, AB2 for the first steps)."""

    kind: Literal["ab3"] = "ab3"

    def build(self) -> steppers.AB3Stepper:
        # pyqg-jax needs dt as a weakly typed Python float.
        return steppers.AB3Stepper(dt=float(self.dt))


class EulerSpec(StepperSpec):
    """Forward Euler, first order."""

    kind: Literal["euler"] = "euler"

    def build(self) -> steppers.EulerStepper:
        return steppers.EulerStepper(dt=float(self.dt))
