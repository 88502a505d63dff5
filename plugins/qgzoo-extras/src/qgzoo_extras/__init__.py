"""qgzoo-extras: a spectral loss and Runge-Kutta steppers for qgzoo.

- loss ``spectral``: squared log-error of the rollout state's isotropic
  spectrum (kinetic energy, enstrophy or potential enstrophy), per layer.
- steppers ``rk4`` and ``ssprk3``: explicit Runge-Kutta schemes, built as
  objects with ``stepped_model(model)`` (see ``qgzoo.parameterized_model``).
"""

from qgzoo import hookimpl

from .runge_kutta import (
    RK4, SSPRK3, ButcherTableau, RungeKuttaStepper, RungeKuttaSteppedModel)
from .spectral_loss import (
    IsotropicSpectrum, SpectralLoss, SpectralSpec, isotropic_spectrum)
from .steppers import RK4Spec, SSPRK3Spec

__all__ = [
    "RK4", "SSPRK3", "ButcherTableau", "IsotropicSpectrum", "RK4Spec", "RungeKuttaStepper",
    "RungeKuttaSteppedModel", "SSPRK3Spec", "SpectralLoss", "SpectralSpec",
    "isotropic_spectrum", "register_components",
]


@hookimpl
def register_components(register):
    register(SpectralSpec)
    register(RK4Spec)
    register(SSPRK3Spec)
