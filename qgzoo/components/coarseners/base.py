"""The coarsener protocol: from a high-resolution field to the low-resolution grid.

A coarsener maps high-resolution q to low-resolution q and gives the two
subgrid forcings, with one sign everywhere: the filtered field obeys
``d(qbar)/dt = RHS_lowres(qbar) + S``.

Spectral coarseners truncate the unnormalised FFT, apply a filter G and divide
by r^2 (r = N/n). They zero the low-resolution Nyquist row and column: after
truncation those modes are not those of a real field, derivatives there are
ambiguous, and with Operator2 (G = 0.19 at Nyquist) they made up all of the
difference between q_forcing_total and q_subgrid_forcing. With Operator1 the
filter already makes them ~1e-15. Outputs are real fields.
"""

from __future__ import annotations

import abc
import equinox as eqx
import jax
import jax.numpy as jnp
from pyqg_jax.qg_model import QGModel

from qgzoo.physics import qg


class AbstractCoarsener(eqx.Module):
    """Maps fields of ``hires`` to fields of ``lores``; q in 1/s, forcings in 1/s^2."""

    hires: eqx.AbstractVar[QGModel]
    lores: eqx.AbstractVar[QGModel]

    @abc.abstractmethod
    def coarsen(self, field: jax.Array) -> jax.Array:
        """Filter and restrict a real field (nz, N, N) to (nz, n, n)."""

    def q_forcing_total(self, q_hires: jax.Array) -> jax.Array:
        """coarsen(dq/dt hires) - dq/dt lores at coarsen(q): the whole tendency error.

        Tendencies exclude the exponential filter, which the stepper applies after
        each step (a step-based difference would be dominated by the low-res
        filter's damping of its highest wavenumbers, not by the subgrid physics).
        """
        qbar = self.coarsen(q_hires)
        return self.coarsen(qg.tendency(self.hires, q_hires)) - qg.tendency(self.lores, qbar)

    def q_subgrid_forcing(self, q_hires: jax.Array) -> jax.Array:
        """coarsen(-div(u q)) - (-div(ubar qbar)): the advective part only."""
        qbar = self.coarsen(q_hires)
        return self.coarsen(qg.advection(self.hires, q_hires)) - qg.advection(self.lores, qbar)


class SpectralCoarsener(AbstractCoarsener):
    """Truncation in Fourier space, times a filter G(k, l) of the low-res grid."""

    @abc.abstractmethod
    def spectral_filter(self) -> jax.Array:
        """G on the low-resolution rfft grid, shape (n, n // 2 + 1), dimensionless."""

    def coarsen(self, field):
        n, big = self.lores.nx, self.hires.nx
        fh = jnp.fft.rfftn(field, axes=(-2, -1))
        kept = jnp.concatenate([fh[..., : n // 2, : n // 2 + 1],
                                fh[..., big - n // 2:, : n // 2 + 1]], axis=-2)
        ratio = big / n
        gain = self.spectral_filter().at[n // 2, :].set(0).at[:, n // 2].set(0)
        return jnp.fft.irfftn(kept * gain / ratio**2, axes=(-2, -1), s=(n, n))
