"""A sharp spectral cutoff: truncation with G = 1 inside a circle in wavenumber, 0 outside."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import Field
from pyqg_jax.qg_model import QGModel

from qgzoo import CoarsenerSpec, SpectralCoarsener


class SharpCutoff(SpectralCoarsener):
    """Truncation keeping the modes with kappa < cutoff * k_Nyquist of the low-res grid."""

    hires: QGModel
    lores: QGModel
    cutoff: float

    def spectral_filter(self) -> jax.Array:
        # In units of the fundamental wavenumber 2 pi / L, so that modes exactly on
        # the circle (integer kappa^2) are excluded however sqrt rounds.
        kappa = jnp.sqrt(self.lores.wv2) / self.lores.dk
        nyquist = self.lores.nx / 2
        return (kappa < self.cutoff * nyquist - 1e-6).astype(self.lores.wv2.dtype)


class SharpCutoffSpec(CoarsenerSpec):
    """Spectral truncation with an isotropic sharp cutoff at a fraction of the low-res Nyquist.

    G = 1 where kappa < cutoff * pi / dx_lo and 0 elsewhere (kappa = sqrt(k^2 + l^2)).
    The inequality is strict, so even ``cutoff = 1`` drops the Nyquist row and
    column, and the coarsened field is real without any projection.
    """

    kind: Literal["sharp_cutoff"] = "sharp_cutoff"
    cutoff: float = Field(
        0.65, gt=0, le=1,
        description="cutoff wavenumber as a fraction of the low-resolution Nyquist "
                    "wavenumber pi/dx (dimensionless); 0.65 is where the low-res model's "
                    "own exponential filter starts")

    def build(self, hires: QGModel, lores: QGModel) -> SharpCutoff:
        return SharpCutoff(hires, lores, float(self.cutoff))
