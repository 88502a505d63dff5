"""qgzoo: a plugin-based zoo of subgrid parameterizations for two-layer QG turbulence.

Importing qgzoo switches on JAX's float64 support (``jax_enable_x64``):
pyqg-jax inverts q to streamfunction in float64 whatever the model precision,
and without it silently truncates to float32. Networks still run in float32.
"""

import jax

jax.config.update("jax_enable_x64", True)

from qgzoo import zoo  # noqa: E402
from qgzoo.coarsen import AbstractCoarsener, Operator1, Operator2, SpectralCoarsener  # noqa: E402
from qgzoo.benchmark import Benchmark  # noqa: E402
from qgzoo.climate import Climate  # noqa: E402
from qgzoo.comparison import Comparison, Entry, compare  # noqa: E402
from qgzoo.experiment import Experiment, TrainingSpec, schema  # noqa: E402
from qgzoo.hookspecs import hookimpl  # noqa: E402
from qgzoo.losses import AbstractLoss  # noqa: E402
from qgzoo.networks import AbstractParameterization, NeuralClosure  # noqa: E402
from qgzoo.optim import OptimizerSpec  # noqa: E402
from qgzoo.plugins import registry  # noqa: E402
from qgzoo.reference import FieldStats, ReferenceData, ReferenceSpec  # noqa: E402
from qgzoo.spec import (  # noqa: E402
    CoarsenerSpec, ComponentSpec, LossSpec, NetworkSpec, StepperSpec)
from qgzoo.trainer import Trained, load, train  # noqa: E402

__all__ = [
    "AbstractCoarsener", "AbstractLoss", "AbstractParameterization", "Benchmark", "Climate",
    "CoarsenerSpec", "Comparison", "ComponentSpec", "Entry", "Experiment", "FieldStats",
    "LossSpec", "NetworkSpec", "NeuralClosure",
    "Operator1", "Operator2", "OptimizerSpec", "ReferenceData", "ReferenceSpec",
    "SpectralCoarsener", "StepperSpec", "Trained", "TrainingSpec", "compare", "hookimpl",
    "load", "registry", "schema", "train", "zoo",
]
