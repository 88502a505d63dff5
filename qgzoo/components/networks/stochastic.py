"""A stochastic closure: any network's forcing plus a learned noise.

S = mean(q) + a[z] * rms(S)[z] * eta[z], where ``mean`` is any network spec (its
deterministic part, which offline training fits), rms(S) the training forcing's
per-layer rms, a = exp(log_amplitude) the trainable dimensionless amplitude, and
eta a noise of unit variance, white in space with its domain mean removed (the
forcing adds no q to a layer) and AR(1) in time: at each evaluation of the model,
eta <- phi eta + sqrt(1 - phi^2) xi with xi fresh normal draws and
phi = exp(-1 / correlation_steps) (0 steps: phi = 0, white in time). A run starts
with eta drawn from that stationary distribution. The PRNG key and eta ride in
pyqg-jax's ``param_aux``, so every run is reproducible from the key it starts with
(``simulate.rollout.initial_state``). Steppers that evaluate the model several
times per step (Runge-Kutta) advance the noise at each evaluation.
"""

from __future__ import annotations

import math
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field

from qgzoo.components.networks.base import AbstractParameterization, Scale
from qgzoo.core.fields import FieldStats, q_forcing_field
from qgzoo.core.schema import Component
from qgzoo.core.spec import NetworkSpec


def centred_normal(key: jax.Array, like: jax.Array) -> jax.Array:
    """Standard normal draws of ``like``'s shape and dtype, each layer's domain mean removed."""
    xi = jax.random.normal(key, like.shape, like.dtype)
    return xi - jnp.mean(xi, axis=(-2, -1), keepdims=True)


class StochasticClosure(AbstractParameterization):
    """``mean``'s forcing plus AR(1) noise of amplitude ``exp(log_amplitude)`` x the
    forcing's rms, per layer; its ``param_aux`` is ``(key, eta)``."""

    mean: AbstractParameterization
    log_amplitude: jax.Array
    """(nz,) dimensionless, trainable."""
    forcing_scale: Scale
    """rms (nz,) of the training data's q forcing, 1/s^2; never trained."""
    memory: float = eqx.field(static=True)
    """phi, the noise's correlation from one evaluation to the next."""

    def q_forcing(self, full_state, model):
        return self.mean.q_forcing(full_state, model)

    def noise(self, eta: jax.Array) -> jax.Array:
        """The forcing (nz, ny, nx), 1/s^2, of the unit noise eta."""
        std = jax.lax.stop_gradient(self.forcing_scale.std)
        amplitude = (jnp.exp(self.log_amplitude) * std).astype(eta.dtype)
        return amplitude[:, None, None] * eta

    def init_aux(self, model_state, model, key=None):
        key = jax.random.PRNGKey(0) if key is None else key
        key, draw = jax.random.split(key)
        return key, centred_normal(draw, model_state.q)

    def step_forcing(self, full_state, aux, model):
        key, eta = aux
        key, draw = jax.random.split(key)
        eta = self.memory * eta + math.sqrt(1 - self.memory**2) * centred_normal(draw, eta)
        return self.q_forcing(full_state, model) + self.noise(eta), (key, eta)

    def q_forcing_at(self, model, q, aux=None):
        forcing = self.mean.q_forcing_at(model, q)
        return forcing if aux is None else forcing + self.noise(aux[1])


class StochasticSpec(NetworkSpec):
    """Any network's forcing plus a trainable noise (white in space, AR(1) in time)."""

    kind: Literal["stochastic"] = "stochastic"
    mean: Component("network") = Field(..., description="the deterministic part: any "
                                                        "network spec")
    amplitude: float = Field(0.1, gt=0, description="initial noise std / the training "
                                                    "forcing's rms, per layer (dimensionless)")
    correlation_steps: float = Field(0.0, ge=0, description="e-folding time of the noise, "
                                                            "model steps (0: white in time)")

    def build(self, stats: FieldStats, *, key, target="q_forcing_total") -> StochasticClosure:
        mean = self.mean.build(stats, key=key, target=target)
        scale = Scale(stats.std[q_forcing_field(target)])
        log_amplitude = jnp.full_like(scale.std, math.log(self.amplitude))
        memory = math.exp(-1 / self.correlation_steps) if self.correlation_steps else 0.0
        return StochasticClosure(mean, log_amplitude, scale, memory)
