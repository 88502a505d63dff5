"""Zanna & Bolton (2020): the equation-discovered momentum closure, on u, v.

With relative vorticity zeta = v_x - u_y, shearing D = v_x + u_y and
stretching D~ = u_x - v_y (all 1/s), the velocity tendency is kappa times the
divergence of

    [[ s - zeta D,  zeta D~ ],
     [ zeta D~,     s + zeta D ]],   s = (zeta^2 + D^2 + D~^2) / 2,

in pyqg's form: its isotropic part s (the paper writes zeta^2 there) is a
gradient, whose curl, and so whose q forcing, vanishes anyway.
"""

from __future__ import annotations

from typing import Literal

import jax
from pydantic import Field
from qgzoo import FieldStats

from . import _spectral as sp
from ._closure import (
    AbstractPhysicalClosure, LogScaled, PhysicalClosureSpec, constant_value)


class ZannaBolton(AbstractPhysicalClosure):
    """Zanna-Bolton 2020 closure with kappa in m^2 (negative)."""

    kappa: float | LogScaled

    def q_forcing(self, full_state, model) -> jax.Array:
        kappa = constant_value(self.kappa, full_state.q.dtype)
        g = sp.velocity_gradients(full_state, model)
        vorticity, shearing, stretching = g.vx - g.uy, g.vx + g.uy, g.ux - g.vy
        isotropic = 0.5 * (vorticity**2 + shearing**2 + stretching**2)
        du, dv = sp.tensor_divergence(
            model, isotropic - vorticity * shearing, vorticity * stretching,
            isotropic + vorticity * shearing)
        return sp.curl(model, kappa * du, kappa * dv)


class ZannaBoltonSpec(PhysicalClosureSpec):
    """Zanna & Bolton (2020) (pyqg's ``ZannaBolton2020``)."""

    kind: Literal["zanna_bolton"] = "zanna_bolton"
    constant_names = ("kappa",)
    kappa: float = Field(
        -46761284.0, lt=0, description="scaling constant kappa in m^2, < 0 (backscatter); "
        "-46 761 284 m^2 was fitted to Operator2-filtered data")

    def build(self, stats: FieldStats, *, key=None, target="q_forcing_total") -> ZannaBolton:
        """The closure; ``stats``, ``key`` and ``target`` are not used."""
        return ZannaBolton(**self.stored_constants())
