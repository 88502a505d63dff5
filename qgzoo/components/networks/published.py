"""Published weights in qgzoo networks: the FullyCNN of Ross et al. (2023), from PyTorch.

``load_fullycnn(folder)`` reads a model folder of m2lines'
pyqg_parameterization_benchmarks (``models/fcnn_q_to_Sqtot1/models/``: one
subfolder per output layer, ``0`` upper, ``1`` lower, each with a PyTorch state
dict ``weights.pt``, the pickled scalers and the lists of inputs and targets)
into the ``cnn`` network of preset ``fullycnn``, without torch. Their
``nn.Sequential`` numbers its modules: a convolution has a 4-D ``weight``, a
BatchNorm ``running_mean`` and ``running_var``, which become the per-channel
affine map BatchNorm is at inference.
"""

from __future__ import annotations

import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.components.networks.base import NeuralClosure, Scale
from qgzoo.components.networks.cnn import CNN, CNNSpec, PerLayer
from qgzoo.core import pytorch
from qgzoo.core.errors import UserError
from qgzoo.core.fields import FieldStats

SCALER = "pyqg_parameterization_benchmarks.neural_networks.ChannelwiseScaler"
#: torch's BatchNorm2d default, with which the published networks were built.
BATCHNORM_EPS = 1e-5


def load_fullycnn(folder: str | pathlib.Path) -> NeuralClosure:
    """The published FullyCNN in ``folder`` (subfolders ``0``, ``1``: one per layer) as
    the ``cnn`` closure of preset ``fullycnn`` on q of both layers; a folder of another
    layout is a ``UserError`` saying what differs."""
    folder = pathlib.Path(folder)
    spec = CNNSpec(preset="fullycnn")
    skeleton = spec.build(FieldStats.placeholder(spec.nz), key=jax.random.key(0))
    nets, input_scales, output_std = [], [], []
    for layer, net in enumerate(skeleton.core.nets):
        part = folder / str(layer)
        _expect(part, "inputs.pkl", [("q", 0), ("q", 1)])
        _expect(part, "targets.pkl", [("q_forcing_total", layer)])
        if not (part / "zero_mean").exists() or _text(part / "padding") != "circular":
            raise UserError(f"{part}: expected a circularly padded network with a zero-mean "
                            f"output (files padding, zero_mean)")
        nets.append(_fill(net, pytorch.read_state_dict(part / "weights.pt"), part))
        inputs = vars(pytorch.read_pickle(part / "input_scale.pkl", {SCALER}))
        outputs = vars(pytorch.read_pickle(part / "output_scale.pkl", {SCALER}))
        if np.any(np.asarray(outputs["mu"]) != 0):
            raise UserError(f"{part}: the output scaler has a mean; the FullyCNN's is zero")
        input_scales.append((np.ravel(inputs["mu"]), np.ravel(inputs["sd"])))
        output_std.append(np.ravel(outputs["sd"])[0])
    mean, std = input_scales[0]
    if any(not (np.array_equal(m, mean) and np.array_equal(s, std)) for m, s in input_scales):
        raise UserError(f"{folder}: the layers' networks scale their inputs differently")
    dtype = skeleton.input_scale.std.dtype
    return NeuralClosure(PerLayer(tuple(nets)), skeleton.inputs,
                         Scale(jnp.asarray(std, dtype), jnp.asarray(mean, dtype)),
                         Scale(jnp.asarray(output_std, dtype)))


def _fill(net: CNN, state: dict[str, np.ndarray], where: pathlib.Path) -> CNN:
    """``net`` with the weights of ``state``: its convolutions and BatchNorms in order."""
    prefixes = sorted({name.rsplit(".", 1)[0] for name in state}, key=int)
    convs = [p for p in prefixes if state.get(f"{p}.weight", np.empty(0)).ndim == 4]
    norms = [p for p in prefixes if f"{p}.running_var" in state]
    if len(convs) != len(net.convs) or len(norms) != len(net.norms):
        raise UserError(f"{where}: {len(convs)} convolutions and {len(norms)} BatchNorms, "
                        f"the FullyCNN has {len(net.convs)} and {len(net.norms)}")
    weights, biases, scales, shifts = [], [], [], []
    for prefix, conv in zip(convs, net.convs):
        weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
        if weight.shape != conv.weight.shape:
            raise UserError(f"{where}: {prefix}.weight has shape {weight.shape}, the "
                            f"FullyCNN's layer {conv.weight.shape}")
        weights.append(jnp.asarray(weight, jnp.float32))
        biases.append(jnp.asarray(bias, jnp.float32).reshape(conv.bias.shape))
    for prefix in norms:
        # BatchNorm at inference: (x - mean) / sqrt(var + eps) * weight + bias.
        scale = state[f"{prefix}.weight"].astype(np.float64) / np.sqrt(
            state[f"{prefix}.running_var"].astype(np.float64) + BATCHNORM_EPS)
        shift = state[f"{prefix}.bias"] - state[f"{prefix}.running_mean"] * scale
        scales.append(jnp.asarray(scale, jnp.float32))
        shifts.append(jnp.asarray(shift, jnp.float32))
    return eqx.tree_at(
        lambda n: ([c.weight for c in n.convs] + [c.bias for c in n.convs]
                   + [a.scale for a in n.norms] + [a.shift for a in n.norms]),
        net, weights + biases + scales + shifts)


def _expect(folder: pathlib.Path, name: str, expected) -> None:
    found = pytorch.read_pickle(folder / name)
    if [tuple(x) for x in found] != expected:
        raise UserError(f"{folder / name}: {found}, expected {expected}")


def _text(path: pathlib.Path) -> str:
    return path.read_text().strip() if path.exists() else ""

