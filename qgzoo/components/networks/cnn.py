"""A fully convolutional network with circular padding; the FullyCNN of Ross et al. as a preset."""

from __future__ import annotations

from typing import Literal, NamedTuple

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
    """Convolutions, ReLU between them, none after the last; its output's spatial mean
    removed if ``zero_mean``."""

    convs: tuple[eqx.nn.Conv2d, ...]
    norms: tuple[eqx.Module, ...]
    zero_mean: bool = eqx.field(static=True, default=False)

    def __call__(self, x):
        for conv, norm in zip(self.convs[:-1], self.norms):
            x = norm(jax.nn.relu(conv(x)))
        y = self.convs[-1](x)
        return y - jnp.mean(y, axis=(-2, -1), keepdims=True) if self.zero_mean else y


class PerLayer(eqx.Module):
    """One network per output channel (a layer's forcing), each seeing every input channel."""

    nets: tuple[eqx.Module, ...]

    def __call__(self, x):
        return jnp.concatenate([net(x) for net in self.nets])


class Layout(NamedTuple):
    """What a CNN spec builds, after its preset."""

    widths: tuple[int, ...]
    kernels: tuple[int, ...]
    norm: str
    per_layer: bool
    output_padding: str
    zero_mean: bool


#: The FullyCNN of Ross et al. (2023): per output layer, 5x5 -> 128, 5x5 -> 64,
#: five 3x3 -> 32, each conv followed by ReLU and BatchNorm (at inference, the
#: per-channel affine map it is; batch statistics would make the model stateful
#: and non-local), then 3x3 -> 1, zero-padded, its output's mean removed; inputs
#: standardised by a mean and a std. 267 841 numbers per layer's network,
#: receptive field 21.
FULLYCNN = Layout((128, 64) + (32,) * 5, (5, 5) + (3,) * 6, "affine", True, "zeros", True)


class CNNSpec(NeuralSpec):
    """A fully convolutional network; ``preset="fullycnn"`` is the FullyCNN of Ross et al.
    (every other layout field is then ignored)."""

    kind: Literal["cnn"] = "cnn"
    channels: tuple[int, ...] = Field((32, 32), description="widths of the hidden layers")
    kernel_sizes: tuple[int, ...] | None = Field(
        None, description="odd kernel size of each conv (hidden layers then output); default 5")
    norm: Literal["none", "affine"] = Field(
        "none", description="per-channel affine layer after each hidden ReLU")
    per_layer: bool = Field(
        False, description="one network per output channel (per layer, for a q forcing), "
                           "each seeing every input")
    output_padding: Literal["circular", "zeros"] = Field(
        "circular", description="padding of the output convolution (hidden ones: circular)")
    zero_mean: bool = Field(False, description="remove the spatial mean of the output")
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

    def layout(self) -> Layout:
        """The layers this spec builds, after applying the preset."""
        if self.preset == "fullycnn":
            return FULLYCNN
        kernels = self.kernel_sizes or (5,) * (len(self.channels) + 1)
        return Layout(self.channels, kernels, self.norm, self.per_layer, self.output_padding,
                      self.zero_mean)

    def build(self, stats: FieldStats, *, key, target="q_forcing_total") -> NeuralClosure:
        layout = self.layout()
        n_in, n_out = len(self.inputs) * self.nz, self.n_outputs(target)
        if layout.per_layer:
            keys = jax.random.split(key, n_out)
            core = PerLayer(tuple(_cnn(layout, n_in, 1, k) for k in keys))
        else:
            core = _cnn(layout, n_in, n_out, key)
        return self.closure(core, stats, target, centred=self.preset == "fullycnn")


def _cnn(layout: Layout, n_in: int, n_out: int, key) -> CNN:
    sizes = (n_in,) + tuple(layout.widths) + (n_out,)
    keys = jax.random.split(key, len(layout.kernels))
    paddings = ("CIRCULAR",) * len(layout.widths) + (layout.output_padding.upper(),)
    convs = tuple(
        eqx.nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode=mode, dtype=jnp.float32,
                      key=k_)
        for c_in, c_out, k, mode, k_ in zip(sizes[:-1], sizes[1:], layout.kernels, paddings, keys))
    norms = tuple(ChannelAffine(jnp.ones(w, jnp.float32), jnp.zeros(w, jnp.float32))
                  if layout.norm == "affine" else eqx.nn.Identity() for w in layout.widths)
    return CNN(convs, norms, layout.zero_mean)
