"""Operator2 of Ross et al. (2023): spectral truncation with a Gaussian filter of
width 2 dx of the low-resolution grid."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from pyqg_jax.qg_model import QGModel

from qgzoo.components.coarseners.base import SpectralCoarsener
from qgzoo.core.spec import CoarsenerSpec


class Operator2(SpectralCoarsener):
    """Spectral truncation with a Gaussian filter exp(-kappa^2 (2 dx)^2 / 24)."""

    hires: QGModel
    lores: QGModel

    def spectral_filter(self):
        return jnp.exp(-self.lores.wv2 * (2 * self.lores.dx) ** 2 / 24)


class Operator2Spec(CoarsenerSpec):
    """Operator2 of Ross et al. (2023): truncation + a Gaussian of width 2 dx_lowres."""

    kind: Literal["operator2"] = "operator2"

    def build(self, hires: QGModel, lores: QGModel) -> Operator2:
        return Operator2(hires, lores)
