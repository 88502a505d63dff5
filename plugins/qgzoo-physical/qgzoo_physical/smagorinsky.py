"""Smagorinsky (1963): a Laplacian eddy viscosity set by the resolved strain, on u, v.

nu = (C dx)^2 sqrt(2 S_ij S_ij), S_ij = (d_i u_j + d_j u_i) / 2, and the
velocity tendency is the divergence of the stress 2 nu S_ij; its curl is the
q forcing.
"""

from __future__ import annotations

from typing import Literal

import jax
from pydantic import Field
from qgzoo import FieldStats

from . import _spectral as sp
from ._closure import (
    AbstractPhysicalClosure, LogScaled, PhysicalClosureSpec, constant_value)


class Smagorinsky(AbstractPhysicalClosure):
    """Smagorinsky closure with constant C (dimensionless)."""

    constant: float | LogScaled

    def q_forcing(self, full_state, model) -> jax.Array:
        c = constant_value(self.constant, full_state.q.dtype)
        grads = sp.velocity_gradients(full_state, model)
        nu = sp.smagorinsky_viscosity(model, grads, c)
        sxy = 0.5 * (grads.uy + grads.vx)
        du, dv = sp.tensor_divergence(model, 2 * nu * grads.ux, 2 * nu * sxy, 2 * nu * grads.vy)
        return sp.curl(model, du, dv)


class SmagorinskySpec(PhysicalClosureSpec):
    """Smagorinsky eddy viscosity on the eddy velocities (pyqg's ``Smagorinsky``)."""

    kind: Literal["smagorinsky"] = "smagorinsky"
    constant_names = ("constant",)
    constant: float = Field(
        0.1, gt=0, description="Smagorinsky constant C, dimensionless, > 0: "
        "nu = (C dx)^2 |S| in m^2/s; pyqg's default 0.1, Ross et al. (2023) 0.15")

    def build(self, stats: FieldStats, *, key=None, target="q_forcing_total") -> Smagorinsky:
        """The closure; ``stats``, ``key`` and ``target`` are not used."""
        return Smagorinsky(**self.stored_constants())
