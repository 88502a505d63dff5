"""Coarseners: the protocol (``base``) and the built-in family, one file each."""

from qgzoo.components.coarseners.base import AbstractCoarsener, SpectralCoarsener
from qgzoo.components.coarseners.operator1 import Operator1, Operator1Spec
from qgzoo.components.coarseners.operator2 import Operator2, Operator2Spec

__all__ = ["AbstractCoarsener", "Operator1", "Operator1Spec", "Operator2", "Operator2Spec",
           "SpectralCoarsener"]
