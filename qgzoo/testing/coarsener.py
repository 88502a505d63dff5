"""Conformance checks of coarseners."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from qgzoo.components.coarseners import AbstractCoarsener
from qgzoo.testing.assertions import assert_close, assert_field, checking, require, rtol_of
from qgzoo.testing.inputs import BATCH, PRECISIONS, TARGETS, random_batch, real_dtype, small_setup
from qgzoo.testing.spec import check_spec


def check_coarsener(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
                    precisions=PRECISIONS, config: str = "eddy") -> None:
    """Check a coarsener spec: ``build(hires, lores)`` in both precisions, then ``coarsen``
    maps (nz, N, N) to (nz, n, n) in the model's dtype, finite, linear and mean
    preserving; the forcings have the same shape and are finite and not zero;
    all of it under jit and vmap, as the reference generation runs it."""
    check_spec(spec, registered=registered)
    for precision in precisions:
        hires, lores, _ = small_setup(config, hires_nx, lores_nx, precision)
        _check_coarsener(spec, hires, lores, precision)


def _coarse_sample(coarsener, q_hires):
    return (coarsener.coarsen(q_hires), coarsener.q_forcing_total(q_hires),
            coarsener.q_subgrid_forcing(q_hires))


_coarse_batch_jit = eqx.filter_jit(jax.vmap(_coarse_sample, in_axes=(None, 0)))


def _check_coarsener(spec, hires, lores, precision):
    at = f" ({precision} precision)"
    dtype = real_dtype(hires)
    shape = (lores.nz, lores.ny, lores.nx)
    with checking(spec, "build" + at):
        coarsener = spec.build(hires, lores)
        require(isinstance(coarsener, AbstractCoarsener),
                f"build returned a {type(coarsener).__name__}, not a qgzoo.AbstractCoarsener")
    batch = random_batch(hires, jax.random.key(1), BATCH + 1)
    x, y = batch[0], batch[-1]
    with checking(spec, "coarsen shape and dtype" + at):
        qbar = coarsener.coarsen(x)
        assert_field(qbar, shape, dtype, f"coarsen of a {hires.nx} x {hires.nx} field")
        require(float(jnp.std(qbar)) > 0, "coarsen of a random field is constant")
    with checking(spec, "linear" + at):
        a, b = 2.5, -0.75
        assert_close(coarsener.coarsen(a * x + b * y), a * qbar + b * coarsener.coarsen(y),
                     rtol_of(dtype), "coarsen(a x + b y) vs a coarsen(x) + b coarsen(y)")
    with checking(spec, "mean preserved" + at):
        offset = jnp.asarray([2e-6, -5e-7], dtype)[:, None, None]
        assert_close(jnp.mean(coarsener.coarsen(x + offset), axis=(-2, -1)),
                     jnp.mean(x + offset, axis=(-2, -1)), rtol_of(dtype),
                     "layer means after coarsening")
    with checking(spec, "jit and vmap over a batch" + at):
        # As the reference generation runs it; the forcings are only computed this way,
        # since op-by-op pyqg-jax takes longer than compiling.
        batched_q, *forcings = _coarse_batch_jit(coarsener, batch)
        for i in range(len(batch)):
            assert_close(batched_q[i], coarsener.coarsen(batch[i]), rtol_of(dtype) * 10,
                         f"coarsen of sample {i} under jit(vmap) vs eagerly")
    with checking(spec, "forcings" + at):
        for name, forcing in zip(TARGETS, forcings):
            assert_field(forcing, batch.shape[:1] + shape, dtype, f"{name} (a vmapped batch)")
            require(float(jnp.max(jnp.abs(forcing))) > 0, f"{name} is zero for random fields")
