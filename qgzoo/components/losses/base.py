"""The loss protocol: scores of a predicted rollout and forcing against the reference.

A loss is a sum of per-sample terms, so the rollout accumulates it inside its
checkpointed scan and never stores the trajectory. Every term is normalised by
the target's per-layer variance over the training data, so losses are O(1).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp


class AbstractLoss(eqx.Module):
    """Per-sample terms: ``state_term`` on rollout states, ``forcing_term`` on forcings.

    A loss whose spec does not need one of the terms (``needs_rollout``,
    ``needs_forcing``) returns ``jnp.zeros((), x.dtype)`` for it. An ensemble of
    rollouts from one start (``training.members``) is scored by ``ensemble_term``:
    the members' mean ``state_term`` unless the loss scores the ensemble as a whole
    (a proper score: ``energy_score``, ``crps``). A loss whose spec ``pools_window``
    also scores the window's states together (``window_term``), added to the mean of
    the per-sample terms.
    """

    @abc.abstractmethod
    def state_term(self, q_pred: jax.Array, q_ref: jax.Array) -> jax.Array:
        """Score (a scalar in q's dtype) of one rollout state (nz, ny, nx) against the reference."""

    def ensemble_term(self, q_members: jax.Array, q_ref: jax.Array) -> jax.Array:
        """Score of an ensemble of rollout states (M, nz, ny, nx) against the reference."""
        return jnp.mean(jax.vmap(self.state_term, in_axes=(0, None))(q_members, q_ref))

    def window_term(self, q_pred: jax.Array, q_ref: jax.Array) -> jax.Array:
        """Score of a window's scored states (K, nz, ny, nx), every member's, pooled,
        against the reference's (K, nz, ny, nx); zero unless the spec ``pools_window``."""
        return jnp.zeros((), q_pred.dtype)

    @abc.abstractmethod
    def forcing_term(self, f_pred: jax.Array, f_ref: jax.Array) -> jax.Array:
        """Score (a scalar in the forcing's dtype) of one predicted forcing (nz, ny, nx)."""


def scaled_by_layer(q: jax.Array, std: jax.Array) -> jax.Array:
    """q (..., nz, ny, nx) divided by each layer's ``std`` (nz,): dimensionless."""
    return q / std.astype(q.dtype)[:, None, None]
