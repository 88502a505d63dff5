"""The built-in components: a plugin, registered through the same hook as any other.

The registry imports this package by its dotted name (``qgzoo.core.plugins.DEFAULT_PLUGINS``).
"""

from qgzoo.components.coarseners import Operator1Spec, Operator2Spec
from qgzoo.components.losses import (
    CRPSSpec, EnergyScoreSpec, ForcingMSESpec, StateMSESpec, WassersteinSpec, WeightedSpec)
from qgzoo.components.networks import CNNSpec, MLPSpec, NoneSpec, StochasticSpec, SymbolicSpec
from qgzoo.components.steppers import AB3Spec, EulerSpec
from qgzoo.core.hookspecs import hookimpl


@hookimpl
def register_components(register):
    for spec_class in (Operator1Spec, Operator2Spec, CNNSpec, MLPSpec, NoneSpec, SymbolicSpec,
                       StochasticSpec, StateMSESpec, ForcingMSESpec, WassersteinSpec,
                       WeightedSpec, EnergyScoreSpec, CRPSSpec,
                       AB3Spec, EulerSpec):
        register(spec_class)
