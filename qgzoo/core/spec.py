"""Spec base classes: frozen pydantic models, and the four component categories.

A component spec describes one coarsener, network, loss or stepper: a
subclass of one of the category bases below with a unique
``kind: Literal["name"] = "name"``, whose ``build`` returns the JAX object.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

#: The component categories, in the order the registry lists them.
CATEGORIES = ("coarsener", "network", "loss", "stepper")


class FrozenSpec(BaseModel):
    """A strict, immutable spec: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentSpec(FrozenSpec):
    """Base of every component spec; subclasses set ``category`` and ``kind``.

    Pydantic models are ``abc.ABCMeta`` classes: a spec without ``build`` cannot be made.
    """

    category: ClassVar[str]
    kind: str

    @abc.abstractmethod
    def build(self, *args, **kwargs):
        """The JAX object this spec describes (arguments by category)."""


class CoarsenerSpec(ComponentSpec):
    """Spec of a coarsener."""

    category: ClassVar[str] = "coarsener"

    @abc.abstractmethod
    def build(self, hires, lores):
        """An ``AbstractCoarsener`` from pyqg-jax ``QGModel`` ``hires`` to ``lores``."""


class NetworkSpec(ComponentSpec):
    """Spec of a network or closure."""

    category: ClassVar[str] = "network"

    @abc.abstractmethod
    def build(self, stats, *, key, target: str = "q_forcing_total"):
        """An ``AbstractParameterization`` scaled by ``stats`` (a ``FieldStats``), its
        weights drawn from the PRNG ``key``, predicting the forcing ``target``."""


class LossSpec(ComponentSpec):
    """Spec of a loss; says whether it scores rollouts, forcings or both."""

    category: ClassVar[str] = "loss"

    @abc.abstractmethod
    def build(self, stats, lores, target: str = "q_forcing_total"):
        """An ``AbstractLoss`` normalised by ``stats`` on the low-resolution model ``lores``."""

    def needs_rollout(self) -> bool:
        """Whether the loss has a ``state_term`` (online training)."""
        return False

    def needs_forcing(self) -> bool:
        """Whether the loss has a ``forcing_term`` (offline training)."""
        return False


class StepperSpec(ComponentSpec):
    """Spec of a time stepper with ``dt`` in seconds."""

    category: ClassVar[str] = "stepper"
    dt: float = Field(3600.0, gt=0, description="time step in seconds")

    @abc.abstractmethod
    def build(self):
        """A pyqg-jax stepper, or an object whose ``stepped_model(model)`` returns
        something with ``SteppedModel``'s methods (see ``qgzoo.parameterized_model``)."""
