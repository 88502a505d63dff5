"""A priori: the mean squared error of the predicted forcing."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from qgzoo.components.losses.base import AbstractLoss
from qgzoo.core.fields import FieldStats
from qgzoo.core.spec import LossSpec


class ForcingMSE(AbstractLoss):
    forcing_variance: jax.Array

    def state_term(self, q_pred, q_ref):
        return jnp.zeros((), q_pred.dtype)

    def forcing_term(self, f_pred, f_ref):
        return jnp.mean(jnp.mean((f_pred - f_ref) ** 2, axis=(-2, -1)) / self.forcing_variance)


class ForcingMSESpec(LossSpec):
    """A priori: MSE of the predicted forcing against the true one, / var(forcing)."""

    kind: Literal["forcing_mse"] = "forcing_mse"

    def needs_forcing(self):
        return True

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> ForcingMSE:
        return ForcingMSE(stats.std[target] ** 2)
