"""What the three closures share: trainable constants, the base closure and spec.

A constant named in the spec's ``trainable`` is a ``LogScaled``: the spec's
value times exp(log_factor), log_factor a float64 JAX scalar starting at 0,
which the shared trainer's ``trainable()`` filter picks up. The others are
plain Python floats, which it never touches. On a log scale every constant is
O(1) to the optimizer whatever its units (kappa ~5e7 m^2, C ~0.1), so one
learning rate suits all (Adam at 1e-2 moves a constant by ~1% per update), and
the sign of a constant can never flip.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field, model_validator
from qgzoo import AbstractParameterization, NetworkSpec


class LogScaled(eqx.Module):
    """A trained constant: ``initial * exp(log_factor)``, in the initial value's unit."""

    log_factor: jax.Array
    initial: float = eqx.field(static=True)

    @property
    def value(self) -> jax.Array:
        return self.initial * jnp.exp(self.log_factor)


def constant_value(constant: float | LogScaled, dtype) -> float | jax.Array:
    """The constant's value, in ``dtype`` if it is an array (a fixed one stays a weak float)."""
    if isinstance(constant, LogScaled):
        return constant.value.astype(dtype)
    return constant


class AbstractPhysicalClosure(AbstractParameterization):
    """A closure whose fields are all its constants (each a float or a ``LogScaled``)."""

    def constants(self) -> dict[str, float]:
        """The effective value of every constant, by name, in its spec's unit."""
        return {field.name: float(constant_value(getattr(self, field.name), jnp.float64))
                for field in dataclasses.fields(self)}


class PhysicalClosureSpec(NetworkSpec):
    """Base of the closure specs: subclasses list their constants in ``constant_names``."""

    constant_names: ClassVar[tuple[str, ...]]
    trainable: tuple[str, ...] = Field(
        (), description="names of the constants the trainer optimizes (on a log scale); "
        "the others stay fixed at their spec values")

    @model_validator(mode="after")
    def _check_trainable(self):
        unknown = [name for name in self.trainable if name not in self.constant_names]
        if unknown:
            raise ValueError(f"trainable: unknown constant(s) {unknown} for kind {self.kind!r}; "
                             f"its constants are {list(self.constant_names)}")
        if len(set(self.trainable)) != len(self.trainable):
            raise ValueError(f"trainable must not repeat a name: {list(self.trainable)}")
        for name in self.trainable:
            if getattr(self, name) == 0:
                raise ValueError(f"{name} = 0 cannot be trained: a trained constant is its "
                                 "initial value times a learned positive factor")
        return self

    def stored_constants(self) -> dict[str, float | LogScaled]:
        """Every constant as the closure stores it: a ``LogScaled`` if trainable, else a float."""
        return {name: LogScaled(jnp.zeros((), jnp.float64), float(getattr(self, name)))
                if name in self.trainable else float(getattr(self, name))
                for name in self.constant_names}
