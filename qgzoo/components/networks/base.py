"""The network protocol: maps from the low-resolution state to a q forcing (1/s^2).

A network here is anything that predicts the subgrid forcing: neural networks
and physical closures alike. Each is an ``AbstractParameterization``, which is
also a pyqg-jax parameterization function, so a trained network plugs into
``pyqg_jax.parameterizations.ParameterizedModel(model, param_func=network)`` (a
stochastic one with ``init_param_aux_func=network.init_aux`` as well, which every
network accepts).
"""

from __future__ import annotations

import abc
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field, model_validator

from qgzoo.core.fields import TARGETS, FieldStats
from qgzoo.core.spec import NetworkSpec
from qgzoo.physics import qg


class AbstractParameterization(eqx.Module):
    """A q-forcing S added to the low-resolution tendency: dq/dt = RHS + S.

    A stochastic closure also carries a state of its own between steps (pyqg-jax's
    ``param_aux``: a PRNG key and its noise), made from a key by ``init_aux`` and
    advanced by ``step_forcing``; a deterministic one keeps ``None`` there.
    ``q_forcing`` is the closure's deterministic part (its mean, for a stochastic one),
    which offline training fits.
    """

    @abc.abstractmethod
    def q_forcing(self, full_state, model) -> jax.Array:
        """Forcing (nz, ny, nx) in 1/s^2 from a pyqg-jax full state of ``model``."""

    def init_aux(self, model_state, model, key: jax.Array | None = None):
        """The closure's state at the start of a run, from a raw uint32 PRNG key (2,)
        (``jax.random.PRNGKey``; pyqg-jax's ``create_initial_state`` passes none, which
        means ``PRNGKey(0)``): None for a deterministic closure."""
        return None

    def step_forcing(self, full_state, aux, model):
        """``(forcing, aux)``: the forcing applied at this step and the closure's next
        state; a deterministic closure applies ``q_forcing``."""
        return self.q_forcing(full_state, model), aux

    def q_forcing_at(self, model, q: jax.Array, aux=None) -> jax.Array:
        """Forcing (nz, ny, nx) in 1/s^2 at the real PV field q (nz, ny, nx) in 1/s; with
        a stochastic closure's ``aux``, including the noise it holds."""
        return self.q_forcing(model.get_full_state(qg.state_from_q(model, q)), model)

    def __call__(self, state, param_aux, model):
        """pyqg-jax ``param_func``: updates of the parameterized model, and its aux state."""
        full = model.get_full_state(state)
        forcing, param_aux = self.step_forcing(full, param_aux, model)
        forcing_h = jnp.fft.rfftn(forcing, axes=(-2, -1))
        return state.update(qh=full.dqhdt + forcing_h.astype(full.dqhdt.dtype)), param_aux


class Scale(eqx.Module):
    """Per-channel scale (and, for inputs, an offset) fitted to data; never trained."""

    std: jax.Array
    mean: jax.Array | None = None


class NeuralClosure(AbstractParameterization):
    """A float32 network on scaled inputs, its output rescaled to its ``target``'s units
    (``core.fields.TARGETS``) and made a q forcing in 1/s^2 (``qg.q_forcing_of``)."""

    core: eqx.Module
    inputs: tuple[str, ...] = eqx.field(static=True)
    input_scale: Scale
    output_scale: Scale
    target: str = eqx.field(static=True, default="q_forcing_total")

    def q_forcing(self, full_state, model):
        x = jnp.concatenate([getattr(full_state, name) for name in self.inputs])
        if self.input_scale.mean is not None:
            x = x - jax.lax.stop_gradient(self.input_scale.mean)[:, None, None]
        x = x / jax.lax.stop_gradient(self.input_scale.std)[:, None, None]
        y = self.core(x.astype(jnp.float32))
        std = jax.lax.stop_gradient(self.output_scale.std).astype(full_state.q.dtype)
        return qg.q_forcing_of(model, self.target, y.astype(full_state.q.dtype) * std[:, None, None])


class LinearClosure(AbstractParameterization):
    """A forcing linear in its weights: per layer z,
    ``S[z] = output_std[z] * sum_j weights[z, j] * F_j[z] / feature_std[z, j]``.

    ``features`` gives the F_j, so that the weights can be fitted in closed form
    (``qgzoo.training.trainer.fit_least_squares``), and the weights are
    dimensionless, so that they can be trained further like any network's.
    """

    weights: jax.Array
    """(nz, n_features), dimensionless."""
    feature_scale: Scale
    """std (nz, n_features): the rms of each feature on the training data."""
    output_scale: Scale

    @abc.abstractmethod
    def features(self, full_state, model) -> jax.Array:
        """The features F (n_features, nz, ny, nx) at a pyqg-jax full state of ``model``."""

    def q_forcing(self, full_state, model):
        features = self.features(full_state, model)
        scale = jax.lax.stop_gradient(self.output_scale.std)[:, None] / jax.lax.stop_gradient(
            self.feature_scale.std)
        coefficients = (self.weights * scale).astype(features.dtype)
        return jnp.einsum("zj,jzyx->zyx", coefficients, features)


def trainable(tree) -> object:
    """Filter spec for ``eqx.partition``: floating arrays except fitted scales."""
    return jax.tree.map(lambda x: False if isinstance(x, Scale) else eqx.is_inexact_array(x),
                        tree, is_leaf=lambda x: isinstance(x, Scale))


class NeuralSpec(NetworkSpec):
    """What the neural networks' specs share: their inputs and layers, and the scaling."""

    inputs: tuple[Literal["q", "u", "v"], ...] = Field(
        ("q",), min_length=1, description="input fields, each per layer (q 1/s; u, v m/s)")
    nz: int = Field(2, ge=1, description="number of layers")

    @model_validator(mode="after")
    def _unique_inputs(self):
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"inputs must not repeat: {self.inputs}")
        return self

    def n_outputs(self, target: str) -> int:
        """Output channels for ``target``: each of its parts per layer."""
        return len(TARGETS[target]) * self.nz

    def closure(self, core, stats: FieldStats, target: str, *,
                centred: bool = False) -> NeuralClosure:
        """``core`` wrapped in the input and output scales fitted to ``stats``; a
        ``centred`` closure also subtracts an input mean (zero: ``stats`` are about 0)."""
        input_std = jnp.concatenate([stats.std[name] for name in self.inputs])
        mean = jnp.zeros_like(input_std) if centred else None
        return NeuralClosure(core, tuple(self.inputs), Scale(input_std, mean),
                             Scale(stats.of(target)), target)
