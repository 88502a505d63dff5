"""Forward Euler (pyqg-jax's stepper)."""

from __future__ import annotations

from typing import Literal

from pyqg_jax import steppers

from qgzoo.core.spec import StepperSpec


class EulerSpec(StepperSpec):
    """Forward Euler, first order."""

    kind: Literal["euler"] = "euler"

    def build(self) -> steppers.EulerStepper:
        return steppers.EulerStepper(dt=float(self.dt))
