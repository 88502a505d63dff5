"""A posteriori: the mean squared error of rollout states, resolved scales by default."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from pydantic import Field

from qgzoo.components.losses.base import AbstractLoss
from qgzoo.core.fields import FieldStats
from qgzoo.core.spec import LossSpec


class StateMSE(AbstractLoss):
    q_variance: jax.Array
    wavenumber_mask: jax.Array | None = None  # (ny, nx // 2 + 1): 1 where scored

    def state_term(self, q_pred, q_ref):
        error = q_pred - q_ref
        if self.wavenumber_mask is not None:
            error = jnp.fft.irfftn(jnp.fft.rfftn(error, axes=(-2, -1)) * self.wavenumber_mask,
                                   axes=(-2, -1), s=error.shape[-2:])
        return jnp.mean(jnp.mean(error**2, axis=(-2, -1)) / self.q_variance)

    def forcing_term(self, f_pred, f_ref):
        return jnp.zeros((), f_pred.dtype)


class StateMSESpec(LossSpec):
    """A posteriori: MSE of the rollout's q against the coarsened reference, / var(q).

    ``scales="resolved"`` scores only the wavenumbers where the low-resolution
    model's exponential filter is 1. Above them the model damps its own state
    every step, whatever the closure adds before the filter: on the 64 -> 16
    eddy reference that damping is over 99% of the 10-step error of the model
    with no parameterization, and would drown the closure's effect.
    """

    kind: Literal["state_mse"] = "state_mse"
    scales: Literal["resolved", "all"] = Field(
        "resolved", description="wavenumbers scored: where the low-res filter is 1, or all")

    def needs_rollout(self):
        return True

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> StateMSE:
        mask = (lores.filtr >= 1.0).astype(lores.filtr.dtype) if self.scales == "resolved" else None
        return StateMSE(stats.std["q"] ** 2, mask)
