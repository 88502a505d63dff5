"""A weighted sum of other losses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qgzoo.components.losses.base import AbstractLoss
from qgzoo.core.fields import FieldStats
from qgzoo.core.schema import Component
from qgzoo.core.spec import FrozenSpec, LossSpec


class Weighted(AbstractLoss):
    losses: tuple[AbstractLoss, ...]
    weights: tuple[float, ...]

    def state_term(self, q_pred, q_ref):
        return sum(w * loss.state_term(q_pred, q_ref) for w, loss in zip(self.weights, self.losses))

    def window_term(self, q_pred, q_ref):
        return sum(w * loss.window_term(q_pred, q_ref)
                   for w, loss in zip(self.weights, self.losses))

    def ensemble_term(self, q_members, q_ref):
        return sum(w * loss.ensemble_term(q_members, q_ref)
                   for w, loss in zip(self.weights, self.losses))

    def forcing_term(self, f_pred, f_ref):
        return sum(w * loss.forcing_term(f_pred, f_ref)
                   for w, loss in zip(self.weights, self.losses))


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

    def pools_window(self):
        return any(t.loss.pools_window() for t in self.terms)

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> Weighted:
        return Weighted(tuple(t.loss.build(stats, lores, target) for t in self.terms),
                        tuple(t.weight for t in self.terms))
