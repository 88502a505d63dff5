"""No parameterization: the low-resolution model alone."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from qgzoo.components.networks.base import AbstractParameterization
from qgzoo.core.fields import FieldStats
from qgzoo.core.spec import NetworkSpec


class NoClosure(AbstractParameterization):
    """No parameterization: S = 0."""

    def q_forcing(self, full_state, model):
        return jnp.zeros_like(full_state.q)


class NoneSpec(NetworkSpec):
    """No parameterization: the low-resolution model alone."""

    kind: Literal["none"] = "none"

    def build(self, stats: FieldStats, *, key, target="q_forcing_total") -> NoClosure:
        return NoClosure()
