"""A posteriori, for ensembles: the continuous ranked probability score, point by point.

At each layer and grid point, for the members' values x_1..x_M and the reference's y,

    CRPS = mean_i |x_i - y| - (1 / (2 M^2)) sum_ij |x_i - x_j|

(the ensemble form of Gneiting & Raftery 2007), with q divided by each layer's rms
on the training data; the loss is its mean over layers and points. A proper score of
each point's marginal distribution, where ``energy_score`` scores whole fields. One
member (``state_term``) scores the mean absolute error.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from qgzoo.components.losses.base import AbstractLoss, scaled_by_layer
from qgzoo.core.fields import FieldStats
from qgzoo.core.spec import LossSpec


def ensemble_crps(members: jax.Array, reference: jax.Array) -> jax.Array:
    """Mean over points of the CRPS of ``members`` (M, ...) against ``reference`` (...)."""
    skill = jnp.mean(jnp.abs(members - reference))
    spread = jnp.mean(jnp.abs(members[:, None] - members[None, :]), axis=tuple(
        range(2, members.ndim + 1)))
    return skill - jnp.sum(spread) / (2 * members.shape[0] ** 2)


class CRPS(AbstractLoss):
    q_std: jax.Array  # (nz,) 1/s

    def state_term(self, q_pred, q_ref):
        return jnp.mean(jnp.abs(scaled_by_layer(q_pred - q_ref, self.q_std)))

    def ensemble_term(self, q_members, q_ref):
        return ensemble_crps(scaled_by_layer(q_members, self.q_std),
                             scaled_by_layer(q_ref, self.q_std))

    def forcing_term(self, f_pred, f_ref):
        return jnp.zeros((), f_pred.dtype)


class CRPSSpec(LossSpec):
    """A posteriori, for ensembles (``training.members``): the CRPS of the members' q at
    each point against the reference, each layer / its rms, averaged over points."""

    kind: Literal["crps"] = "crps"

    def needs_rollout(self):
        return True

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> CRPS:
        return CRPS(stats.std["q"])
