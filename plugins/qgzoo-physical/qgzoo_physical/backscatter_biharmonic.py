"""Backscatter-biharmonic closure (Jansen & Held 2014; Jansen et al. 2015), on q.

A biharmonic Smagorinsky dissipation,

    D = -lap(nu4 lap^2 psi),  nu4 = dx^2 (C_S dx)^2 |S|   (m^4/s),

plus a negative-viscosity backscatter along lap^2 psi whose amplitude returns a
fraction C_B of the energy D removes, both energies summed over the layers
weighted by their depths H_i:

    B = -C_B lap^2 psi * sum_i H_i <psi_i D_i> / sum_i H_i <psi_i lap^2 psi_i>.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import Field
from qgzoo import FieldStats

from . import _spectral as sp
from ._closure import (
    AbstractPhysicalClosure, LogScaled, PhysicalClosureSpec, constant_value)

#: Added to the backscatter's denominator (m^2/s^2 x m ...) so a fluid at rest
#: gives 0 rather than 0/0; pyqg's value, far below any state's energy.
EPS = 1e-32


class BackscatterBiharmonic(AbstractPhysicalClosure):
    """Biharmonic Smagorinsky dissipation (C_S) with energy backscatter (C_B)."""

    smag_constant: float | LogScaled
    back_constant: float | LogScaled

    def q_forcing(self, full_state, model) -> jax.Array:
        dtype = full_state.q.dtype
        c_s = constant_value(self.smag_constant, dtype)
        c_b = constant_value(self.back_constant, dtype)
        psi = sp.to_real(model, full_state.ph)
        bilap_psi = sp.to_real(model, sp.laplacian(model, sp.laplacian(model, full_state.ph)))
        nu = sp.smagorinsky_viscosity(model, sp.velocity_gradients(full_state, model), c_s)
        nu4 = model.dx**2 * nu
        dissipation = -sp.to_real(model, sp.laplacian(model, sp.to_spectral(nu4 * bilap_psi)))

        def depth_weighted(field):
            return jnp.sum(model.Hi * jnp.mean(psi * field, axis=(-2, -1)))

        ratio = depth_weighted(dissipation) / (depth_weighted(bilap_psi) + EPS)
        return dissipation - c_b * ratio * bilap_psi


class BackscatterBiharmonicSpec(PhysicalClosureSpec):
    """Biharmonic Smagorinsky plus backscatter (pyqg's ``BackscatterBiharmonic``)."""

    kind: Literal["backscatter_biharmonic"] = "backscatter_biharmonic"
    constant_names = ("smag_constant", "back_constant")
    smag_constant: float = Field(
        0.08, gt=0, description="Smagorinsky constant C_S, dimensionless, > 0; pyqg 0.08, "
        "Ross et al. (2023) sqrt(0.007) = 0.0837")
    back_constant: float = Field(
        0.99, ge=0, description="backscatter fraction C_B of the dissipated energy returned, "
        "dimensionless, >= 0 (0: no backscatter); pyqg 0.99, Ross et al. (2023) 1.2")

    def build(self, stats: FieldStats, *, key=None,
              target="q_forcing_total") -> BackscatterBiharmonic:
        """The closure; ``stats``, ``key`` and ``target`` are not used."""
        return BackscatterBiharmonic(**self.stored_constants())
