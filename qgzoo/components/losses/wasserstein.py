"""A posteriori and blind to phase: 1-D Wasserstein distances between the values a
rollout state and its reference take over the grid.

For each rollout state, layer and quantity (q; u and v with the background flow;
KE = u^2 + v^2; enstrophy = zeta^2, as the distributional metrics define them),
the term is W1 between the two samples of ny * nx grid values, divided by the
standard deviation of the reference's sample: dimensionless, 0 for a state that
is its reference moved around the domain, |c| / std for one shifted by a
constant c. With equal sample sizes W1 is the mean absolute difference of the
sorted samples, which is differentiable almost everywhere. The state's terms are
averaged over layers and quantities; the rollout sums them over its window like
every state term, so a trajectory that leaves the phase of the reference but
keeps its statistics is not penalised, where ``state_mse`` rewards damping.

With ``pool = "window"`` the samples are the values over the grid and over every
scored state of the window (and every member of an ensemble), against the
reference's states of the same window: the distance of the window's climate, blind
to the order of the states in time as well as to their phase in space.
"""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field, field_validator
from pyqg_jax.qg_model import QGModel

from qgzoo.components.losses.base import AbstractLoss
from qgzoo.core.fields import FieldStats
from qgzoo.core.spec import LossSpec
from qgzoo.physics import qg

Quantity = Literal["q", "u", "v", "KE", "enstrophy"]


def sorted_wasserstein(a: jax.Array, b: jax.Array) -> jax.Array:
    """W1 between equal-size samples along the last axis: mean |sort(a) - sort(b)|."""
    return jnp.mean(jnp.abs(jnp.sort(a, axis=-1) - jnp.sort(b, axis=-1)), axis=-1)


def flow_quantities(model: QGModel, q: jax.Array, names) -> jax.Array:
    """(quantities, nz, ny * nx): the grid values of each named quantity at q (nz, ny, nx)."""
    u, v = qg.velocities(model, q)
    u = u + model.Ubg[:, None, None]
    values = {"q": lambda: q, "u": lambda: u, "v": lambda: v,
              "KE": lambda: u**2 + v**2, "enstrophy": lambda: qg.relative_vorticity(model, q)**2}
    return jnp.stack([values[name]() for name in names]).reshape(len(names), q.shape[0], -1)


@eqx.filter_jit
def _scaled_distance(model: QGModel, names: tuple[str, ...], q_pred, q_ref) -> jax.Array:
    """The loss of states q_pred against q_ref, each (K, nz, ny, nx): the W1 of the values
    of all K states, per quantity and layer, / the reference's std, averaged."""
    # Compiled (inlined under an outer jit), so that eager calls do not dispatch each
    # operation of the inversions on their own.
    def pooled(q):
        values = jax.vmap(lambda x: flow_quantities(model, x, names))(q)
        return jnp.moveaxis(values, 0, -2).reshape(*values.shape[1:3], -1)
    pred, ref = pooled(q_pred), pooled(q_ref)
    spread = jnp.std(ref, axis=-1)
    return jnp.mean(sorted_wasserstein(pred, ref) / jnp.where(spread > 0, spread, 1.0))


class Wasserstein(AbstractLoss):
    model: QGModel
    quantities: tuple[str, ...] = eqx.field(static=True)
    pool: str = eqx.field(static=True, default="state")

    def state_term(self, q_pred, q_ref):
        if self.pool == "window":
            return jnp.zeros((), q_pred.dtype)
        return _scaled_distance(self.model, self.quantities, q_pred[None], q_ref[None])

    def window_term(self, q_pred, q_ref):
        if self.pool == "state":
            return jnp.zeros((), q_pred.dtype)
        return _scaled_distance(self.model, self.quantities, q_pred, q_ref)

    def forcing_term(self, f_pred, f_ref):
        return jnp.zeros((), f_pred.dtype)


class WassersteinSpec(LossSpec):
    """A posteriori, phase-blind: W1 between the grid distributions of flow quantities of
    each rollout state and of its reference, / the reference's std (per layer)."""

    kind: Literal["wasserstein"] = "wasserstein"
    quantities: tuple[Quantity, ...] = Field(
        ("q", "KE", "enstrophy"), min_length=1,
        description="quantities whose distributions are compared: q, u, v (with the "
                    "background flow), KE = u^2 + v^2, enstrophy = zeta^2")
    pool: Literal["state", "window"] = Field(
        "state", description="state: each rollout state against its reference state; "
                             "window: the values of all the window's scored states pooled")

    @field_validator("quantities")
    @classmethod
    def _distinct(cls, quantities):
        if len(set(quantities)) != len(quantities):
            raise ValueError(f"quantities repeat: {list(quantities)}")
        return quantities

    def needs_rollout(self):
        return True

    def pools_window(self):
        return self.pool == "window"

    def build(self, stats: FieldStats, lores, target: str = "q_forcing_total") -> Wasserstein:
        return Wasserstein(lores, tuple(self.quantities), self.pool)
