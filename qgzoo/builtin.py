"""The built-in components, registered through the same hook as any plugin."""

from qgzoo import coarsen, losses, networks, steppers
from qgzoo.hookspecs import hookimpl


@hookimpl
def register_components(register):
    for spec_class in (
        coarsen.Operator1Spec, coarsen.Operator2Spec,
        networks.CNNSpec, networks.MLPSpec, networks.NoneSpec,
        losses.StateMSESpec, losses.ForcingMSESpec, losses.WeightedSpec,
        steppers.AB3Spec, steppers.EulerSpec,
    ):
        register(spec_class)
