"""A fully convolutional network with circular padding; the FullyCNN of Ross et al. as a preset."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field, model_validator

from qgzoo.components.networks.base import NeuralClosure, NeuralSpec
from qgzoo.core.fields import FieldStats


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


class CNNSpec(NeuralSpec):
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
        return self.closure(CNN(convs, norms), stats, target)
