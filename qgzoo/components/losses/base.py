"""The loss protocol: scores of a predicted rollout and forcing against the reference.

A loss is a sum of per-sample terms, so the rollout accumulates it inside its
checkpointed scan and never stores the trajectory. Every term is normalised by
the target's per-layer variance over the training data, so losses are O(1).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax


class AbstractLoss(eqx.Module):
    """Per-sample terms: ``state_term`` on rollout states, ``forcing_term`` on forcings.

    A loss whose spec does not need one of the terms (``needs_rollout``,
    ``needs_forcing``) returns ``jnp.zeros((), x.dtype)`` for it.
    """

    @abc.abstractmethod
    def state_term(self, q_pred: jax.Array, q_ref: jax.Array) -> jax.Array:
        """Score (a scalar in q's dtype) of one rollout state (nz, ny, nx) against the reference."""

    @abc.abstractmethod
    def forcing_term(self, f_pred: jax.Array, f_ref: jax.Array) -> jax.Array:
        """Score (a scalar in the forcing's dtype) of one predicted forcing (nz, ny, nx)."""
