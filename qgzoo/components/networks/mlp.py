"""A local-stencil MLP: the same MLP at every grid point, on its neighbourhood."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field, model_validator

from qgzoo.components.networks.base import NeuralClosure, NeuralSpec
from qgzoo.core.fields import FieldStats


class StencilMLP(eqx.Module):
    """The same MLP at every grid point, fed the point's (s x s) neighbourhood."""

    mlp: eqx.nn.MLP
    stencil: int = eqx.field(static=True)

    def __call__(self, x):
        half = self.stencil // 2
        offsets = range(-half, half + 1)
        patches = jnp.stack([jnp.roll(x, (dy, dx), axis=(-2, -1))
                             for dy in offsets for dx in offsets], axis=1)
        channels, ny, nx = patches.shape[0] * patches.shape[1], *x.shape[-2:]
        points = patches.reshape(channels, ny * nx).T
        return jax.vmap(self.mlp)(points).T.reshape(-1, ny, nx)


class MLPSpec(NeuralSpec):
    """A local-stencil MLP: the same MLP at every point on its s x s neighbourhood."""

    kind: Literal["mlp"] = "mlp"
    stencil: int = Field(3, ge=1, description="odd neighbourhood size in grid points")
    width: int = Field(64, ge=1, description="hidden width")
    depth: int = Field(2, ge=1, description="number of hidden layers")

    @model_validator(mode="after")
    def _odd(self):
        if self.stencil % 2 == 0:
            raise ValueError(f"stencil must be odd, got {self.stencil}")
        return self

    def build(self, stats: FieldStats, *, key, target="q_forcing_total") -> NeuralClosure:
        n_in = len(self.inputs) * self.nz * self.stencil**2
        mlp = eqx.nn.MLP(n_in, self.n_outputs(target), self.width, self.depth, activation=jax.nn.relu,
                         dtype=jnp.float32, key=key)
        return self.closure(StencilMLP(mlp, self.stencil), stats, target)
