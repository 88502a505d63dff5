"""Spec base classes: frozen pydantic models, and the four component categories.

A component spec describes one coarsener, network, loss or stepper: a
subclass of one of the category bases below with a unique
``kind: Literal["name"] = "name"``, whose ``build`` returns the JAX object.
"""

from __future__ import annotations

import abc
import json
import types
import typing
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: The component categories, in the order the registry lists them.
CATEGORIES = ("coarsener", "network", "loss", "stepper")


class FrozenSpec(BaseModel):
    """A strict, immutable spec: unknown fields are errors, and a number is a number.

    Pydantic would read ``"10"`` or ``true`` as the integer 10 or 1; in a spec
    such a value can only be a mistake, so a string or a boolean given for a
    numeric field is refused (whatever the subclass).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before", check_fields=False)
    @classmethod
    def _numbers_are_numbers(cls, value, info: ValidationInfo):
        annotation = cls.model_fields[info.field_name].annotation
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is dict and isinstance(value, dict):
            for key, item in value.items():
                _refuse_coercion(item, _numeric(args[1]), f"{key!r}: ")
        elif origin in (tuple, list) and isinstance(value, (tuple, list)) and args:
            for index, item in enumerate(value):
                _refuse_coercion(item, _numeric(args[0]), f"item {index}: ")
        else:
            _refuse_coercion(value, _numeric(annotation))
        return value


def _numeric(annotation) -> tuple[type, ...]:
    """The numeric types among ``annotation`` (``int``, ``float | None``...) unless it
    also admits strings or booleans."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)
    if str in members or bool in members:
        return ()
    return tuple(t for t in members if t in (int, float))


def _refuse_coercion(value, numeric: tuple[type, ...], where: str = "") -> None:
    if numeric and isinstance(value, (str, bool)):
        wanted = "an integer" if numeric == (int,) else "a number"
        raise ValueError(f"{where}expected {wanted}, got {json.dumps(value)}")


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

    def pools_window(self) -> bool:
        """Whether the loss has a ``window_term``, on a window's states pooled (the
        rollout then keeps them)."""
        return False


class StepperSpec(ComponentSpec):
    """Spec of a time stepper with ``dt`` in seconds."""

    category: ClassVar[str] = "stepper"
    dt: float = Field(3600.0, gt=0, description="time step in seconds")

    @abc.abstractmethod
    def build(self):
        """A pyqg-jax stepper, or an object whose ``stepped_model(model)`` returns
        something with ``SteppedModel``'s methods (see ``qgzoo.parameterized_model``)."""
