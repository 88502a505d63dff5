"""Failing with a message that says which component breaks which property, and where."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np


class ConformanceError(AssertionError):
    """A component breaks a property every component of its category must have."""


def describe(spec) -> str:
    category = getattr(spec, "category", "component")
    return f"{category} kind {getattr(spec, 'kind', '?')!r} ({type(spec).__name__})"


@contextlib.contextmanager
def checking(spec, name: str):
    """Turn any failure inside into a ConformanceError naming ``spec`` and the property."""
    try:
        yield
    except ConformanceError:
        raise
    except Exception as error:
        detail = (str(error) if isinstance(error, AssertionError)
                  else f"raised {type(error).__name__}: {error}")
        raise ConformanceError(f"{describe(spec)}: {name}: {detail}") from error


def require(condition, message: str):
    if not condition:
        raise AssertionError(message)


def rtol_of(dtype) -> float:
    return 1e-4 if np.dtype(dtype) == np.float32 else 1e-9


def assert_close(actual, expected, rtol: float, what: str):
    actual, expected = np.asarray(actual), np.asarray(expected)
    require(actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}")
    scale = max(float(np.max(np.abs(expected), initial=0.0)), np.finfo(np.float64).tiny)
    error = float(np.max(np.abs(actual - expected), initial=0.0)) / scale
    require(error <= rtol, f"{what}: relative difference {error:.3g} > {rtol:g}")


def assert_field(value, shape, dtype, what: str):
    """A real, finite array of ``shape`` and ``dtype``."""
    require(hasattr(value, "shape") and hasattr(value, "dtype"),
            f"{what} is a {type(value).__name__}, not an array")
    require(tuple(value.shape) == tuple(shape), f"{what} has shape {tuple(value.shape)}, "
            f"expected {tuple(shape)}")
    require(value.dtype == dtype, f"{what} has dtype {value.dtype}, expected {np.dtype(dtype)}"
            " (the model's dtype)")
    require(bool(jnp.all(jnp.isfinite(value))), f"{what} is not finite")


def assert_finite_tree(tree, what: str):
    for leaf in jax.tree.leaves(tree):
        require(bool(jnp.all(jnp.isfinite(leaf))), f"{what} is not finite")
