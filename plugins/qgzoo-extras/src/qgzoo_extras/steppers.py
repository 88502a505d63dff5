"""Specs of the Runge-Kutta steppers: ``rk4`` and ``ssprk3``."""

from __future__ import annotations

from typing import Literal

from qgzoo import StepperSpec

from .runge_kutta import RK4, SSPRK3, RungeKuttaStepper


class RK4Spec(StepperSpec):
    """The classical four-stage, fourth-order Runge-Kutta scheme (4 model evaluations a step)."""

    kind: Literal["rk4"] = "rk4"

    def build(self) -> RungeKuttaStepper:
        return RungeKuttaStepper(dt=float(self.dt), tableau=RK4)


class SSPRK3Spec(StepperSpec):
    """Shu-Osher's three-stage, third-order strong-stability-preserving Runge-Kutta scheme."""

    kind: Literal["ssprk3"] = "ssprk3"

    def build(self) -> RungeKuttaStepper:
        return RungeKuttaStepper(dt=float(self.dt), tableau=SSPRK3)
