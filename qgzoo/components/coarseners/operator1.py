"""Operator1 of Ross et al. (2023): sharp spectral truncation with the low-resolution
model's own exponential filter."""

from __future__ import annotations

from typing import Literal

from pyqg_jax.qg_model import QGModel

from qgzoo.components.coarseners.base import SpectralCoarsener
from qgzoo.core.spec import CoarsenerSpec


class Operator1(SpectralCoarsener):
    """Sharp spectral truncation with the low-res model's own exponential filter."""

    hires: QGModel
    lores: QGModel

    def spectral_filter(self):
        return self.lores.filtr


class Operator1Spec(CoarsenerSpec):
    """Operator1 of Ross et al. (2023): truncation + the low-res model's filter."""

    kind: Literal["operator1"] = "operator1"

    def build(self, hires: QGModel, lores: QGModel) -> Operator1:
        return Operator1(hires, lores)
