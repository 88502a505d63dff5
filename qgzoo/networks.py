"""Networks: maps from the low-resolution state to a q forcing (1/s^2).

A network here is anything that predicts the subgrid forcing: neural networks
and physical closures alike. Each is an ``AbstractParameterization``, which is
also a pyqg-jax parameterization function, so a trained network plugs into
``pyqg_jax.parameterizations.ParameterizedModel(model, param_func=network)``.
"""

from __future__ import annotations

import abc
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field, model_validator

from qgzoo import qg
from qgzoo.reference import FieldStats
from qgzoo.spec import NetworkSpec

INPUTS = ("q", "u", "v")


class AbstractParameterization(eqx.Module):
    """A q-forcing S added to the low-resolution tendency: dq/dt = RHS + S."""

    @abc.abstractmethod
    def q_forcing(self, full_state, model) -> jax.Array:
        """Forcing (nz, ny, nx) in 1/s^2 from a pyqg-jax full state of ``model``."""

    def q_forcing_at(self, model, q: jax.Array) -> jax.Array:
        """Forcing (nz, ny, nx) in 1/s^2 at the real PV field q (nz, ny, nx) in 1/s."""
        return self.q_forcing(model.get_full_state(qg.state_from_q(model, q)), model)

    def __call__(self, state, param_aux, model):
        """pyqg-jax ``param_func``: updates of the parameterized model, and its aux state."""
        full = model.get_full_state(state)
        forcing_h = jnp.fft.rfftn(self.q_forcing(full, model), axes=(-2, -1))
        return state.update(qh=full.dqhdt + forcing_h.astype(full.dqhdt.dtype)), param_aux


class NoClosure(AbstractParameterization):
    """No parameterization: S = 0."""

    def q_forcing(self, full_state, model):
        return jnp.zeros_like(full_state.q)


class Scale(eqx.Module):
    """Per-channel scale fitted from training data; never trained."""

    std: jax.Array


class NeuralClosure(AbstractParameterization):
    """A float32 network on scaled inputs, its output rescaled to 1/s^2."""

    core: eqx.Module
    inputs: tuple[str, ...] = eqx.field(static=True)
    input_scale: Scale
    output_scale: Scale

    def q_forcing(self, full_state, model):
        x = jnp.concatenate([getattr(full_state, name) for name in self.inputs])
        x = x / jax.lax.stop_gradient(self.input_scale.std)[:, None, None]
        y = self.core(x.astype(jnp.float32))
        std = jax.lax.stop_gradient(self.output_scale.std).astype(full_state.q.dtype)
        return y.astype(full_state.q.dtype) * std[:, None, None]


def trainable(tree) -> object:
    """Filter spec for ``eqx.partition``: floating arrays except fitted scales."""
    return jax.tree.map(lambda x: False if isinstance(x, Scale) else eqx.is_inexact_array(x),
                        tree, is_leaf=lambda x: isinstance(x, Scale))


class ChannelAffine(eqx.Module):
    """A learned scale and shift per channel: what BatchNorm is at inference."""

    scale: jax.Array
    shift: jax.Array

    def __call__(self, x):
        return x * self.scale[:, None, None] + self.shift[:, None, None]


class CNN(eqx.Module):
    """Convolutions with circular padding, ReLU between them, none after the last."""

    convs: tuple[eqx.nn.Conv2d, ...]
    norms: tuple[eqx.Module, ...]

    def __call__(self, x):
        for conv, norm in zip(self.convs[:-1], self.norms):
            x = norm(jax.nn.relu(conv(x)))
        return self.convs[-1](x)


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


class _NeuralSpec(NetworkSpec):
    inputs: tuple[Literal["q", "u", "v"], ...] = Field(
        ("q",), min_length=1, description="input fields, each per layer (q 1/s; u, v m/s)")
    nz: int = Field(2, ge=1, description="number of layers")

    @model_validator(mode="after")
    def _unique_inputs(self):
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError(f"inputs must not repeat: {self.inputs}")
        return self

    def _closure(self, core, stats: FieldStats, target: str) -> NeuralClosure:
        input_std = jnp.concatenate([stats.std[name] for name in self.inputs])
        return NeuralClosure(core, tuple(self.inputs), Scale(input_std),
                             Scale(stats.std[target]))


class CNNSpec(_NeuralSpec):
    """A fully convolutional network; ``preset="fullycnn"`` is the layout of Ross et al."""

    kind: Literal["cnn"] = "cnn"
    channels: tuple[int, ...] = Field((32, 32), description="widths of the hidden layers")
    kernel_sizes: tuple[int, ...] | None = Field(
        None, description="odd kernel size of each conv (hidden layers then output); default 5")
    norm: Literal["none", "affine"] = Field(
        "none", description="per-channel affine layer after each hidden ReLU")
    preset: Literal["fullycnn"] | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.preset == "fullycnn":
            return self
        if self.kernel_sizes is not None:
            if len(self.kernel_sizes) != len(self.channels) + 1:
                raise ValueError(f"kernel_sizes needs {len(self.channels) + 1} entries "
                                 "(one per hidden layer and the output)")
            if any(k % 2 == 0 or k < 1 for k in self.kernel_sizes):
                raise ValueError(f"kernel sizes must be odd and positive: {self.kernel_sizes}")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive: {self.channels}")
        return self

    def layout(self) -> tuple[tuple[int, ...], tuple[int, ...], str]:
        """(hidden widths, kernel sizes, normalisation) after applying the preset."""
        if self.preset == "fullycnn":
            # Ross et al.'s FullyCNN: 5x5 -> 128, 5x5 -> 64, five 3x3 -> 32, 3x3 -> out
            # (268k parameters for 2 inputs, receptive field 21). Of the original's
            # BatchNorm we keep the per-channel affine it is at inference: batch
            # statistics would make the model stateful and non-local.
            return (128, 64) + (32,) * 5, (5, 5) + (3,) * 6, "affine"
        kernels = self.kernel_sizes or (5,) * (len(self.channels) + 1)
        return self.channels, kernels, self.norm

    def build(self, stats: FieldStats, *, key, target="q_forcing_total") -> NeuralClosure:
        widths, kernels, norm = self.layout()
        sizes = (len(self.inputs) * self.nz,) + tuple(widths) + (self.nz,)
        keys = jax.random.split(key, len(kernels))
        convs = tuple(
            eqx.nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="CIRCULAR",
                          dtype=jnp.float32, key=k_)
            for c_in, c_out, k, k_ in zip(sizes[:-1], sizes[1:], kernels, keys))
        norms = tuple(ChannelAffine(jnp.ones(w, jnp.float32), jnp.zeros(w, jnp.float32))
                      if norm == "affine" else eqx.nn.Identity() for w in widths)
        return self._closure(CNN(convs, norms), stats, target)


class MLPSpec(_NeuralSpec):
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
        mlp = eqx.nn.MLP(n_in, self.nz, self.width, self.depth, activation=jax.nn.relu,
                         dtype=jnp.float32, key=key)
        return self._closure(StencilMLP(mlp, self.stencil), stats, target)


class NoneSpec(NetworkSpec):
    """No parameterization: the low-resolution model alone."""

    kind: Literal["none"] = "none"

    def build(self, stats: FieldStats, *, key, target="q_forcing_total") -> NoClosure:
        return NoClosure()
