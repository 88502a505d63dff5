"""A qgzoo plugin for the test suite: the ``testblock`` coarsener.

Spectral truncation with a Gaussian filter exp(-kappa^2 (w dx)^2 / 24), whose
width w (in low-resolution grid spacings dx) is a spec field; w = 2 is
Operator2.
"""

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import Field
from pyqg_jax.qg_model import QGModel

import qgzoo
from qgzoo import CoarsenerSpec, SpectralCoarsener


class GaussianCoarsener(SpectralCoarsener):
    """Truncation times a Gaussian of width ``width_factor`` low-resolution grid spacings."""

    hires: QGModel
    lores: QGModel
    width_factor: float

    def spectral_filter(self) -> jax.Array:
        width = self.width_factor * self.lores.dx  # metres
        return jnp.exp(-self.lores.wv2 * width**2 / 24)


class TestBlockSpec(CoarsenerSpec):
    """Gaussian-filter coarsener of adjustable width (a plugin component for tests)."""

    __test__ = False  # not a pytest test class, whatever its name

    kind: Literal["testblock"] = "testblock"
    width_factor: float = Field(
        2.0, gt=0, description="filter width in low-resolution grid spacings (dimensionless)")

    def build(self, hires: QGModel, lores: QGModel) -> GaussianCoarsener:
        return GaussianCoarsener(hires, lores, float(self.width_factor))


@qgzoo.hookimpl
def register_components(register):
    register(TestBlockSpec)
