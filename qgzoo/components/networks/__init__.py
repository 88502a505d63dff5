"""Networks and closures: the protocol (``base``) and the built-in family, one file each."""

from qgzoo.components.networks.base import (
    AbstractParameterization, LinearClosure, NeuralClosure, NeuralSpec, Scale, trainable)
from qgzoo.components.networks.cnn import CNN, ChannelAffine, CNNSpec, PerLayer
from qgzoo.components.networks.mlp import MLPSpec, StencilMLP
from qgzoo.components.networks.none import NoClosure, NoneSpec
from qgzoo.components.networks.published import load_fullycnn
from qgzoo.components.networks.stochastic import StochasticClosure, StochasticSpec
from qgzoo.components.networks.symbolic import SymbolicClosure, SymbolicSpec

__all__ = ["CNN", "AbstractParameterization", "CNNSpec", "ChannelAffine", "LinearClosure",
           "MLPSpec", "NeuralClosure", "NeuralSpec", "NoClosure", "NoneSpec", "PerLayer",
           "Scale", "StencilMLP", "StochasticClosure", "StochasticSpec", "SymbolicClosure",
           "SymbolicSpec", "load_fullycnn", "trainable"]
