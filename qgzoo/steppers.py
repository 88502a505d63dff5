"""Time steppers of the low-resolution model (pyqg-jax's own)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pyqg_jax import steppers

from qgzoo.spec import StepperSpec

_DT = Field(3600.0, gt=0, description="time step in seconds")


class AB3Spec(StepperSpec):
    """Third-order Adams-Bashforth, pyqg's scheme (Euler, AB2 for the first steps)."""

    kind: Literal["ab3"] = "ab3"
    dt: float = _DT

    def build(self) -> steppers.AB3Stepper:
        # pyqg-jax needs dt as a weakly typed Python float.
        return steppers.AB3Stepper(dt=float(self.dt))


class EulerSpec(StepperSpec):
    """Forward Euler, first order."""

    kind: Literal["euler"] = "euler"
    dt: float = _DT

    def build(self) -> steppers.EulerStepper:
        return steppers.EulerStepper(dt=float(self.dt))
