"""qgzoo: a plugin-based zoo of subgrid parameterizations for two-layer QG turbulence.

This module is the public face: plugins, docs and users import from here (and
the conformance kit from ``qgzoo.testing``). The implementation lives in
layers, lowest first, each importing only from its own layer or below:
``core``, ``physics``, ``components``, ``data``, ``simulate``, ``training``,
``zoo``, ``evaluation``, ``sweeps``, ``testing``, ``app``.

Importing qgzoo switches on JAX's float64 support (``jax_enable_x64``):
pyqg-jax inverts q to streamfunction in float64 whatever the model precision,
and without it silently truncates to float32. Networks still run in float32.
"""

import jax

jax.config.update("jax_enable_x64", True)

from qgzoo import zoo  # noqa: E402
from qgzoo.components.coarseners import (  # noqa: E402
    AbstractCoarsener, Operator1, Operator2, SpectralCoarsener)
from qgzoo.components.losses import AbstractLoss  # noqa: E402
from qgzoo.components.networks import (  # noqa: E402
    AbstractParameterization, NeuralClosure, NoClosure, trainable)
from qgzoo.core.errors import UserError  # noqa: E402
from qgzoo.core.fields import TARGETS, FieldStats  # noqa: E402
from qgzoo.core.hookspecs import hookimpl  # noqa: E402
from qgzoo.core.plugins import registry  # noqa: E402
from qgzoo.core.schema import validate_component  # noqa: E402
from qgzoo.core.spec import (  # noqa: E402
    CoarsenerSpec, ComponentSpec, LossSpec, NetworkSpec, StepperSpec)
from qgzoo.data.reference import ReferenceData, ReferenceSpec  # noqa: E402
from qgzoo.evaluation.benchmark import Benchmark  # noqa: E402
from qgzoo.evaluation.climate import Climate  # noqa: E402
from qgzoo.evaluation.comparison import Comparison, compare  # noqa: E402
from qgzoo.evaluation.results import Entry  # noqa: E402
from qgzoo.simulate.rollout import parameterized_model  # noqa: E402
from qgzoo.sweeps import Sweep, SweepResult, sweep  # noqa: E402
from qgzoo.training.experiment import Experiment, TrainingSpec, schema  # noqa: E402
from qgzoo.training.optimizers import OptimizerSpec  # noqa: E402
from qgzoo.training.trained import Trained, load  # noqa: E402
from qgzoo.training.trainer import train  # noqa: E402

__all__ = [
    "AbstractCoarsener", "AbstractLoss", "AbstractParameterization", "Benchmark", "Climate",
    "CoarsenerSpec", "Comparison", "ComponentSpec", "Entry", "Experiment", "FieldStats",
    "LossSpec", "NetworkSpec", "NeuralClosure", "NoClosure", "Operator1", "Operator2",
    "OptimizerSpec", "ReferenceData", "ReferenceSpec", "SpectralCoarsener", "StepperSpec",
    "Sweep", "SweepResult", "TARGETS", "Trained", "TrainingSpec", "UserError", "compare",
    "hookimpl", "load", "parameterized_model", "registry", "schema", "sweep", "train",
    "trainable", "validate_component", "zoo",
]
