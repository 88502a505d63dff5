"""Conformance checks of networks and closures."""

from __future__ import annotations

import io
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
from pyqg_jax.steppers import AB3Stepper

from qgzoo.components.networks import AbstractParameterization, trainable
from qgzoo.core.fields import FieldStats
from qgzoo.physics import qg
from qgzoo.simulate.rollout import initial_state, parameterized_model
from qgzoo.testing.assertions import (
    assert_close, assert_field, assert_finite_tree, checking, describe, require)
from qgzoo.testing.inputs import (
    BATCH, PRECISIONS, TARGETS, random_batch, real_dtype, run_steps, small_setup)
from qgzoo.testing.spec import check_spec

log = logging.getLogger(__name__)


def check_network(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
                  precisions=PRECISIONS, config: str = "eddy", target: str = "q_forcing_total",
                  trainable_arrays: bool | None = None) -> None:
    """Check a network spec: ``build(stats, key=, target=)`` returns an
    AbstractParameterization whose ``q_forcing`` has the model's shape and dtype
    in both precisions, steps in a pyqg-jax ParameterizedModel, works under jit
    and vmap, is differentiable, and can be restored from weights built on
    placeholder stats (as ``qgzoo.load`` does). A stochastic network (``init_aux`` not
    None) keeps its noise state's shapes through a step, and its runs are the same from
    the same key and differ from another.

    ``trainable_arrays``: None accepts a network with or without trainable
    arrays (a closure may have none); True or False requires one or the other.
    """
    check_spec(spec, registered=registered)
    for precision in precisions:
        _check_network(spec, *small_setup(config, hires_nx, lores_nx, precision), precision,
                       target, trainable_arrays)
    _check_network_restore(spec, *small_setup(config, hires_nx, lores_nx, "double"), target)


def _full_states(model, q_batch):
    return jax.vmap(lambda q: model.get_full_state(qg.state_from_q(model, q)))(q_batch)


# Shared by every network: the q -> full state inversion is compiled once per model.
_full_states_jit = eqx.filter_jit(_full_states)
_forcing_batch_jit = eqx.filter_jit(
    lambda network, model, full: jax.vmap(lambda f: network.q_forcing(f, model))(full))


_run_batch_jit = eqx.filter_jit(jax.vmap(run_steps, in_axes=(None, 0, None)))


def _take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _check_network(spec, hires, lores, stats, precision, target, trainable_arrays):
    at = f" ({precision} precision)"
    dtype = real_dtype(lores)
    shape = (lores.nz, lores.ny, lores.nx)
    with checking(spec, "build" + at):
        for other in TARGETS:
            spec.build(FieldStats.placeholder(lores.nz), key=jax.random.key(0), target=other)
        network = spec.build(stats, key=jax.random.key(0), target=target)
        require(isinstance(network, AbstractParameterization),
                f"build returned a {type(network).__name__}, "
                "not a qgzoo.AbstractParameterization")
    batch = random_batch(lores, jax.random.key(3), BATCH)
    full = _full_states_jit(lores, batch)
    with checking(spec, "q_forcing shape and dtype" + at):
        forcings = [network.q_forcing(_take(full, i), lores) for i in range(BATCH)]
        assert_field(forcings[0], shape, dtype, "q_forcing")
    with checking(spec, "jit and vmap over a batch" + at):
        batched = _forcing_batch_jit(network, lores, full)
        for i in range(BATCH):
            assert_close(batched[i], forcings[i], 1e-4,
                         f"q_forcing of sample {i} under jit(vmap) vs eagerly")
    with checking(spec, "steps in a pyqg-jax ParameterizedModel" + at):
        model = parameterized_model(lores, network, AB3Stepper(dt=3600.0))
        q_end = _run_batch_jit(model, batch, 3).state.model_state.q
        assert_field(q_end, batch.shape, dtype, "q after 3 steps (a vmapped batch)")
    _check_noise(spec, network, model, batch[0], at)
    with checking(spec, "differentiable" + at):
        params, static = eqx.partition(network, trainable(network))
        weights = jax.random.normal(jax.random.key(4), shape, dtype)
        scale = stats.std[target][:, None, None]

        def scalar(params, full):
            forcing = eqx.combine(params, static).q_forcing(full, lores)
            return jnp.sum(forcing / scale * weights)

        grads_params, grads_full = eqx.filter_jit(jax.grad(scalar, argnums=(0, 1)))(
            params, _take(full, 0))
        assert_finite_tree(grads_full, "the gradient with respect to the full state (q, u, v, ...)")
        leaves = jax.tree.leaves(grads_params)
        if not leaves:
            require(trainable_arrays is not True,
                    "it has no trainable arrays (eqx.partition with qgzoo.trainable)")
            log.info("%s has no trainable arrays; no gradient to check", describe(spec))
        else:
            require(trainable_arrays is not False, f"it has {len(leaves)} trainable arrays")
            assert_finite_tree(grads_params, "the gradient with respect to the trainable arrays")
            require(any(bool(jnp.any(g != 0)) for g in leaves),
                    "the gradient with respect to the trainable arrays is zero")


_run_jit = eqx.filter_jit(run_steps)


def _check_noise(spec, network, model, q, at):
    """A stochastic closure (``init_aux`` not None): its state keeps its structure through
    a step, and its runs depend on the key they start from, and on nothing else."""
    start = initial_state(model, q, jax.random.PRNGKey(1))
    if start.state.param_aux.value is None:
        return
    with checking(spec, "its noise state keeps its shapes through a step" + at):
        after = jax.eval_shape(model.step_model, start)
        require(jax.tree.structure(after) == jax.tree.structure(start) and all(
            (a.shape, a.dtype) == (b.shape, b.dtype)
            for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(start))),
            "step_forcing returned an aux of another structure, shape or dtype than "
            "init_aux (a scan over steps needs them equal)")
    with checking(spec, "its runs are reproducible from their key" + at):
        first, again, other = (_run_jit(model, q, 3, jax.random.PRNGKey(k)).state.model_state.q
                               for k in (1, 1, 2))
        assert_close(again, first, 0.0, "q after 3 steps, run twice from the same key")
        require(bool(jnp.any(first != other)),
                "runs from two keys are equal: the noise does not depend on the key")


def _check_network_restore(spec, hires, lores, stats, target):
    full = _take(_full_states_jit(lores, random_batch(lores, jax.random.key(7), 1)), 0)
    with checking(spec, "weights restore into a placeholder build"):
        network = spec.build(stats, key=jax.random.key(5), target=target)
        skeleton = spec.build(FieldStats.placeholder(lores.nz), key=jax.random.key(6),
                              target=target)
        buffer = io.BytesIO()
        eqx.tree_serialise_leaves(buffer, network)
        buffer.seek(0)
        restored = eqx.tree_deserialise_leaves(buffer, skeleton)
        assert_close(restored.q_forcing(full, lores), network.q_forcing(full, lores), 1e-6,
                     "q_forcing after tree_serialise_leaves into a build from "
                     "FieldStats.placeholder() (what qgzoo.load does)")
