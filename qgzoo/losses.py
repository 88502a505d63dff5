"""Losses: scores of a predicted rollout and forcing against the reference.

A loss is a sum of per-sample terms, so the rollout accumulates it inside its
checkpointed scan and never stores the trajectory. Every term is normalised by
the target's per-layer variance over the training data, so losses are O(1).
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field

from qgzoo.reference import FieldStats
from qgzoo.spec import Component, FrozenSpec, LossSpec


class AbstractLoss(eqx.Module):
    """Per-sample terms: ``state_term`` on rollout states, ``forcing_term`` on forcings."""

    def state_term(self, q_pred: jax.Array, q_ref: jax.Array) -> jax.Array:
        """Score of one rollout state (nz, ny, nx) against the reference; 0 by default."""
        return jnp.zeros((), q_pred.dtype)

    def forcing_term(self, f_pred: jax.Array, f_ref: jax.Array) -> jax.Array:
        """Score of one predicted forcing (nz, ny, nx) against the truth; 0 by default."""
        return jnp.zeros((), f_pred.dtype)


class StateMSE(AbstractLoss):
    q_variance: jax.Array
    wavenumber_mask: jax.Array | None = None  # (ny, nx // 2 + 1): 1 where scored

    def state_term(self, q_pred, q_ref):
        error = q_pred - q_ref
        if self.wavenumber_mask is not None:
            error = jnp.fft.irfftn(jnp.fft.rfftn(error, axes=(-2, -1)) * self.wavenumber_mask,
                                   axes=(-2, -1), s=error.shape[-2:])
        return jnp.mean(jnp.mean(error**2, axis=(-2, -1)) / self.q_variance)


class ForcingMSE(AbstractLoss):
    forcing_variance: jax.Array

    def forcing_term(self, f_pred, f_ref):
        return jnp.mean(jnp.mean((f_pred - f_ref) ** 2, axis=(-2, -1)) / self.forcing_variance)


class Weighted(AbstractLoss):
    losses: tuple[AbstractLoss, ...]
    weights: tuple[float, ...]

    def state_term(self, q_pred, q_ref):
        return sum(w * loss.state_term(q_pred, q_ref) for w, loss in zip(self.weights, self.losses))

    def forcing_term(self, f_pred, f_ref):
        return sum(w * loss.forcing_term(f_pred, f_ref)
                   for w, loss in zip(self.weights, self.losses))


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


class ForcingMSESpec(LossSpec):
    """A priori: MSE of the predicted forcing against the true one, / var(forcing)."""

    kind: Literal["forcing_mse"] = "forcing_mse"

    def needs_forcing(self):
        return True

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> ForcingMSE:
        return ForcingMSE(stats.std[target] ** 2)


class WeightedTerm(FrozenSpec):
    weight: float = Field(1.0, ge=0, description="dimensionless weight")
    loss: Component("loss")


class WeightedSpec(LossSpec):
    """A weighted sum of other losses."""

    kind: Literal["weighted"] = "weighted"
    terms: tuple[WeightedTerm, ...] = Field(..., min_length=1)

    def needs_rollout(self):
        return any(t.loss.needs_rollout() for t in self.terms)

    def needs_forcing(self):
        return any(t.loss.needs_forcing() for t in self.terms)

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> Weighted:
        return Weighted(tuple(t.loss.build(stats, lores, target) for t in self.terms),
                        tuple(t.weight for t in self.terms))
