"""The published FullyCNN run by PyTorch itself, the reference of test_published.py.

Writes ross2023_fcnn_torch.npz: a smooth random q (2, 64, 64) in 1/s and the
forcing (2, 64, 64) in 1/s^2 that Ross et al.'s networks predict for it, in
float64. Their network is rebuilt in torch from the layout their code
describes (registry/ross2023-fcnn/published/SOURCE.md) and loaded with
torch.load. Needs torch (not a dependency of qgzoo):

    python -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy
    /tmp/torch/bin/python tests/data/ross2023_fcnn_torch.py
"""

import pathlib
import pickle
import sys
import types

import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).parent
PUBLISHED = HERE.parents[1] / "registry" / "ross2023-fcnn" / "published"


class ChannelwiseScaler:
    """A stand-in for the class their scaler pickles name."""


package = "pyqg_parameterization_benchmarks"
sys.modules[package] = types.ModuleType(package)
sys.modules[f"{package}.neural_networks"] = types.ModuleType(f"{package}.neural_networks")
sys.modules[f"{package}.neural_networks"].ChannelwiseScaler = ChannelwiseScaler


def fullycnn() -> nn.Sequential:
    layers, channels = [], 2
    for width, kernel in [(128, 5), (64, 5)] + [(32, 3)] * 5:
        layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2,
                             padding_mode="circular"), nn.ReLU(), nn.BatchNorm2d(width)]
        channels = width
    layers.append(nn.Conv2d(channels, 1, 3, padding=1))  # zero padding, as published
    return nn.Sequential(*layers).double().eval()


def main():
    rng = np.random.default_rng(1)
    k2 = np.fft.fftfreq(64)[:, None] ** 2 + np.fft.rfftfreq(64)[None] ** 2
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((2, 64, 64))) * np.exp(-400 * k2),
                          s=(64, 64))
    field /= field.std(axis=(1, 2), keepdims=True)
    scaler = pickle.loads((PUBLISHED / "0" / "input_scale.pkl").read_bytes())
    mu, sd = scaler.mu[0].astype(np.float64), scaler.sd[0].astype(np.float64)
    q = field * sd + mu
    forcing = []
    for layer in (0, 1):
        net = fullycnn()
        net.load_state_dict(torch.load(PUBLISHED / str(layer) / "weights.pt", weights_only=True))
        output = pickle.loads((PUBLISHED / str(layer) / "output_scale.pkl").read_bytes())
        with torch.no_grad():
            y = net(torch.tensor((q - mu) / sd)[None]).numpy()[0, 0]
        forcing.append((y - y.mean()) * float(output.sd.ravel()[0]))
    np.savez(HERE / "ross2023_fcnn_torch.npz", q=q, forcing=np.stack(forcing),
             torch_version=torch.__version__)


if __name__ == "__main__":
    main()
