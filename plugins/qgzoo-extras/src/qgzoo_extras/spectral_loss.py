"""The ``spectral`` loss: log-error of the isotropic spectrum of the rollout state.

For each rollout state and its reference, per layer, the isotropic spectrum S(j)
(kinetic energy, relative or potential enstrophy) is summed over annuli
(j - 1/2) dk <= kappa < (j + 1/2) dk, dk = 2 pi / L. The term is the mean over
the scored annuli and the layers of (log S_pred(j) - log S_ref(j))^2:
dimensionless, O(1), blind to phase (a shifted field scores 0), and it rewards
the right energy at each scale where ``state_mse`` rewards the right pattern.

Normalisation (checked by Parseval in the tests): the annuli, all of them,
sum to the domain mean of the quantity per layer, e.g. mean(u^2 + v^2) / 2 in
m^2/s^2 for kinetic energy.
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field
from pyqg_jax.qg_model import QGModel

from qgzoo import AbstractLoss, FieldStats, LossSpec

Quantity = Literal["kinetic_energy", "enstrophy", "potential_enstrophy"]
#: Where the low-resolution model's exponential filter starts, in grid-scaled wavenumber.
RESOLVED_FRACTION = 0.65


def annulus_index(model: QGModel) -> np.ndarray:
    """Index j of the annulus of each rfft mode (ny, nx // 2 + 1): round(kappa / dk)."""
    dk = 2 * np.pi / float(model.L)
    return np.rint(np.sqrt(np.asarray(model.wv2)) / dk).astype(int)


def binning_matrix(model: QGModel) -> np.ndarray:
    """(modes, annuli) matrix summing |f_hat|^2 of rfft modes into annuli, normalised so
    that the annuli add up to the domain mean of f^2 (Parseval, unnormalised FFT)."""
    index = annulus_index(model).ravel()
    nx, ny = model.nx, model.ny
    # Columns 1 .. nx/2 - 1 of the rfft stand for two modes each (k and -k).
    multiplicity = np.full((ny, nx // 2 + 1), 2.0)
    multiplicity[:, 0] = 1.0
    multiplicity[:, nx // 2] = 1.0
    matrix = np.zeros((index.size, index.max() + 1))
    matrix[np.arange(index.size), index] = multiplicity.ravel() / (nx * ny) ** 2
    return matrix


def inversion_matrix(model: QGModel) -> jax.Array:
    """(2, 2, ny, nk) matrix taking the two-layer qh to psih; zero at kappa = 0."""
    k2, f1, f2 = model.wv2, model.F1, model.F2
    det = k2 * (k2 + f1 + f2)
    safe = jnp.where(det == 0, 1.0, det)
    entries = jnp.stack([jnp.stack([-(k2 + f2), -f1 * jnp.ones_like(k2)]),
                         jnp.stack([-f2 * jnp.ones_like(k2), -(k2 + f1)])])
    return jnp.where(det == 0, 0.0, entries / safe)


class IsotropicSpectrum(eqx.Module):
    """Per-layer isotropic spectrum of a two-layer q field on one model's grid."""

    inverse: jax.Array | None  # (2, 2, ny, nk) in m^2 (psi from q); None for q^2 / 2
    mode_weight: jax.Array  # (ny, nk): kappa^2 / 2 (m^-2), kappa^4 / 2 (m^-4) or 1/2
    binning: jax.Array  # (ny * nk, annuli)

    def __call__(self, q: jax.Array) -> jax.Array:
        """S (nz, annuli) of q (nz, ny, nx) in 1/s: m^2/s^2 (KE) or 1/s^2 (enstrophies)."""
        fh = jnp.fft.rfftn(q, axes=(-2, -1))
        if self.inverse is not None:
            fh = jnp.einsum("ijyx,jyx->iyx", self.inverse, fh)
        power = self.mode_weight * (fh.real**2 + fh.imag**2)
        return power.reshape(q.shape[0], -1) @ self.binning


def isotropic_spectrum(model: QGModel, quantity: Quantity) -> IsotropicSpectrum:
    """The spectrum of ``quantity`` on ``model``'s grid (a two-layer QG model), computed in
    the model's precision."""
    k2 = model.wv2
    binning = jnp.asarray(binning_matrix(model), k2.dtype)
    if quantity == "potential_enstrophy":
        return IsotropicSpectrum(None, 0.5 * jnp.ones_like(k2), binning)
    if getattr(model, "nz", 2) != 2:
        raise ValueError(f"{quantity} spectra need the two-layer QG inversion, got nz={model.nz}")
    weight = 0.5 * k2 if quantity == "kinetic_energy" else 0.5 * k2**2
    return IsotropicSpectrum(inversion_matrix(model).astype(k2.dtype), weight, binning)


class SpectralLoss(AbstractLoss):
    """Mean over scored annuli and layers of (log S_pred - log S_ref)^2."""

    spectrum: IsotropicSpectrum
    scored: jax.Array  # (annuli,) 1 for the annuli in the loss, 0 elsewhere
    floor: float = eqx.field(static=True)  # relative to the reference's total, dimensionless

    def state_term(self, q_pred, q_ref):
        pred, ref = self.spectrum(q_pred), self.spectrum(q_ref)
        # The floor keeps log finite where the filter has emptied an annulus.
        eps = self.floor * jnp.sum(ref * self.scored, axis=-1, keepdims=True)
        eps = eps + jnp.finfo(ref.dtype).tiny
        error = (jnp.log(pred + eps) - jnp.log(ref + eps)) ** 2
        return jnp.mean(jnp.sum(error * self.scored, axis=-1) / jnp.sum(self.scored))

    def forcing_term(self, f_pred, f_ref):
        return jnp.zeros((), f_pred.dtype)


class SpectralSpec(LossSpec):
    """A posteriori: squared log-error of the rollout's isotropic spectrum, per layer.

    ``quantity``: kinetic energy (|grad psi|^2 / 2), enstrophy (relative
    vorticity, zeta^2 / 2, pyqg's Ensspec) or potential enstrophy (q^2 / 2).
    ``scales="resolved"`` scores the annuli j = 1 .. 0.65 n/2, whose centre j dk
    lies where the low-resolution model's exponential filter is 1 (above, the
    model damps its own state every step, whatever the closure does); ``"all"``
    scores j = 1 .. n/2 (the corners beyond the Nyquist circle are never scored).
    """

    kind: Literal["spectral"] = "spectral"
    quantity: Quantity = Field("kinetic_energy", description="spectrum compared")
    scales: Literal["resolved", "all"] = Field(
        "resolved", description="annuli scored: where the low-res filter is 1, or up to Nyquist")
    floor: float = Field(
        1e-12, gt=0, lt=1e-2,
        description="added to both spectra before the log, as a fraction of the reference's "
                    "scored total (dimensionless)")

    def needs_rollout(self):
        return True

    def build(self, stats: FieldStats, lores: QGModel,
              target: str = "q_forcing_total") -> SpectralLoss:
        spectrum = isotropic_spectrum(lores, self.quantity)
        annuli = np.arange(spectrum.binning.shape[1])
        top = lores.nx // 2 * (RESOLVED_FRACTION if self.scales == "resolved" else 1.0)
        scored = ((annuli >= 1) & (annuli <= top)).astype(float)
        return SpectralLoss(spectrum, jnp.asarray(scored, lores.wv2.dtype), float(self.floor))
