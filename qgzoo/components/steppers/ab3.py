"""Third-order Adams-Bashforth, pyqg's scheme (pyqg-jax's stepper)."""

from __future__ import annotations

from typing import Literal

from pyqg_jax import steppers

from qgzoo.core.spec import StepperSpec


class AB3Spec(StepperSpec):
    """Third-order Adams-Bashforth, pyqg's scheme (Euler, AB2 for the first steps)."""

    kind: Literal["ab3"] = "ab3"

    def build(self) -> steppers.AB3Stepper:
        # pyqg-jax needs dt as a weakly typed Python float.
        return steppers.AB3Stepper(dt=float(self.dt))
