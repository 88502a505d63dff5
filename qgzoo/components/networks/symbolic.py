"""The hybrid symbolic closure of Ross et al. (2023): per layer, a linear combination of
spatial-derivative terms of the low-resolution state.

A term is a chain of operators applied to a field, written as a call:
``laplacian(advected(q))``. The operators are theirs, spectral on the
low-resolution grid: ``ddx(f) = irfft(i k fh)``, ``ddy(f) = irfft(i l fh)``,
``laplacian(f) = irfft(-(k^2 + l^2) fh)`` and ``advected(f) = ddx(f ufull) +
ddy(f vfull)`` with the full velocities (background flow included). The fields
are q (1/s) and the eddy velocities u, v (m/s), each per layer: a layer's terms
are made of that layer's fields only, as in their regression.

The forcing of layer z is ``std(S)[z] * sum_j w[z, j] T_j[z] / rms(T_j)[z]``: the
weights w are dimensionless. ``fit_least_squares`` in the trainer sets the term
scales from the training data and solves for w in closed form (training method
``least_squares``); after that w trains like any network's weights, online too.
"""

from __future__ import annotations

import re
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from pydantic import Field, field_validator

from qgzoo.components.networks.base import LinearClosure, Scale
from qgzoo.core.errors import UserError
from qgzoo.core.fields import TARGETS, FieldStats
from qgzoo.core.spec import NetworkSpec

OPERATORS = ("ddx", "ddy", "laplacian", "advected")
TERM_FIELDS = ("q", "u", "v")

#: The seven terms of Ross et al.'s eddy model (their Table, refitted per layer).
ROSS2023_EDDY_TERMS = (
    "laplacian(advected(q))",
    "laplacian(laplacian(advected(q)))",
    "laplacian(laplacian(laplacian(advected(q))))",
    "laplacian(laplacian(q))",
    "laplacian(laplacian(laplacian(q)))",
    "advected(advected(ddx(laplacian(v))))",
    "advected(advected(ddy(laplacian(u))))",
)

_CALL = re.compile(r"^(\w+)\((.*)\)$")


def parse_term(text: str) -> tuple[tuple[str, ...], str]:
    """``"laplacian(advected(q))"`` -> ``(("laplacian", "advected"), "q")``: the operators
    from the outermost in, and the field."""
    operators, rest = [], "".join(text.split())
    while (call := _CALL.match(rest)) is not None:
        if call.group(1) not in OPERATORS:
            raise ValueError(f"term {text!r}: unknown operator {call.group(1)!r}; "
                             f"operators: {', '.join(OPERATORS)}")
        operators.append(call.group(1))
        rest = call.group(2)
    if rest not in TERM_FIELDS:
        raise ValueError(f"term {text!r}: {rest!r} is not a field; fields: "
                         f"{', '.join(TERM_FIELDS)}, inside calls of {', '.join(OPERATORS)}")
    return tuple(operators), rest


def evaluate_term(term: tuple[tuple[str, ...], str], full_state, model) -> jax.Array:
    """A parsed term (``parse_term``) on a pyqg-jax full state: (nz, ny, nx), real."""
    operators, field = term
    shape = full_state.q.shape[-2:]
    k, l = model.k, model.l
    spectral = lambda f, factor: jnp.fft.irfftn(factor * jnp.fft.rfftn(f, axes=(-2, -1)),
                                                axes=(-2, -1), s=shape)
    ddx = lambda f: spectral(f, 1j * k)
    ddy = lambda f: spectral(f, 1j * l)
    ufull = full_state.u + model.Ubg[:, None, None]
    vfull = full_state.v
    apply = {"ddx": ddx, "ddy": ddy, "laplacian": lambda f: spectral(f, -(k**2 + l**2)),
             "advected": lambda f: ddx(f * ufull) + ddy(f * vfull)}
    value = getattr(full_state, field)
    for operator in reversed(operators):
        value = apply[operator](value)
    return value


class SymbolicClosure(LinearClosure):
    """Per layer, a weighted sum of the spec's terms (module docstring)."""

    terms: tuple[tuple[tuple[str, ...], str], ...] = eqx.field(static=True)

    def features(self, full_state, model):
        return jnp.stack([evaluate_term(term, full_state, model) for term in self.terms])


class SymbolicSpec(NetworkSpec):
    """The hybrid symbolic closure: a linear combination of derivative terms per layer.

    Fit it with ``training.method = "least_squares"`` (closed form); the weights can
    then be trained further, offline or online, from ``training.init_from``."""

    kind: Literal["symbolic"] = "symbolic"
    terms: tuple[str, ...] = Field(
        ROSS2023_EDDY_TERMS, min_length=1,
        description="terms, e.g. laplacian(advected(q)); operators ddx, ddy, laplacian, "
                    "advected; fields q, u, v")
    nz: int = Field(2, ge=1, description="number of layers")

    @field_validator("terms")
    @classmethod
    def _parse(cls, terms):
        for term in terms:
            parse_term(term)
        if len(set(map(parse_term, terms))) != len(terms):
            raise ValueError(f"terms must not repeat: {terms}")
        return terms

    def build(self, stats: FieldStats, *, key, target="q_forcing_total") -> SymbolicClosure:
        del key  # the weights start at zero: no closure until fitted
        if TARGETS[target] != (target,):
            raise UserError(f"network kind symbolic predicts a q forcing; forcing_target "
                            f"{target!r} is not one")
        shape = (self.nz, len(self.terms))
        return SymbolicClosure(
            weights=jnp.zeros(shape, jnp.float64), feature_scale=Scale(jnp.ones(shape)),
            output_scale=Scale(stats.std[target]), terms=tuple(map(parse_term, self.terms)))
