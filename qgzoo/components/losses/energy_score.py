"""A posteriori, for ensembles: the energy score, a proper scoring rule.

For an ensemble X_1..X_M of rollout states from one start and the reference y,

    ES = mean_i ||X_i - y|| - (1 / (2 M^2)) sum_ij ||X_i - X_j||

(Gneiting & Raftery 2007; Brolly 2026 trains stochastic closures with it), where
||.|| is the root mean square over layers and grid points of q divided by each
layer's rms on the training data: dimensionless. Its expectation is smallest when
the members are draws from the distribution the reference is drawn from, so it
rewards an ensemble that keeps the reference's spread, where a state MSE rewards
the damped mean. One member (``state_term``) scores ||X - y||.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from qgzoo.components.losses.base import AbstractLoss, scaled_by_layer
from qgzoo.core.fields import FieldStats
from qgzoo.core.spec import LossSpec


def safe_rms(x: jax.Array) -> jax.Array:
    """Root mean square of x over every axis, with a zero gradient where it is 0 (two
    equal members), not NaN."""
    square = jnp.mean(x**2)
    return jnp.where(square > 0, jnp.sqrt(jnp.where(square > 0, square, 1.0)), 0.0)


def ensemble_energy_score(members: jax.Array, reference: jax.Array) -> jax.Array:
    """ES of ``members`` (M, ...) against ``reference`` (...), with ``safe_rms`` as the norm."""
    skill = jnp.mean(jax.vmap(lambda x: safe_rms(x - reference))(members))
    pairs = jax.vmap(lambda a: jax.vmap(lambda b: safe_rms(a - b))(members))(members)
    return skill - jnp.sum(pairs) / (2 * members.shape[0] ** 2)


class EnergyScore(AbstractLoss):
    q_std: jax.Array  # (nz,) 1/s

    def state_term(self, q_pred, q_ref):
        return safe_rms(scaled_by_layer(q_pred - q_ref, self.q_std))

    def ensemble_term(self, q_members, q_ref):
        return ensemble_energy_score(scaled_by_layer(q_members, self.q_std),
                                     scaled_by_layer(q_ref, self.q_std))

    def forcing_term(self, f_pred, f_ref):
        return jnp.zeros((), f_pred.dtype)


class EnergyScoreSpec(LossSpec):
    """A posteriori, for ensembles (``training.members``): the energy score of the
    members' q against the reference, each layer / its rms; a proper scoring rule."""

    kind: Literal["energy_score"] = "energy_score"

    def needs_rollout(self):
        return True

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> EnergyScore:
        return EnergyScore(stats.std["q"])
