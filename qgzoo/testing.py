"""Conformance checks for components: import them in a plugin's own tests.

    from qgzoo.testing import check_component

    def test_my_coarsener_conforms():
        check_component(MyCoarsenerSpec())

``check_component`` runs the checks of the spec's category and raises an
``AssertionError`` (a ``ConformanceError``) whose message names the component
and the property it breaks. Each category also has its own function
(``check_coarsener``, ``check_network``, ``check_loss``, ``check_stepper``),
which takes the same options. The checks use small grids (32 -> 16 points,
eddy physics), both precisions and a few steps: from a few seconds to a minute
per component on a small CPU, most of it JAX compilation (``precisions=("double",)``
halves it).

Input fields are random but realistic (``random_q``): a red spectrum with zero
mean and per-layer amplitudes near those of the eddy configuration, since a
short run from ``create_initial_state`` is still nearly zonal.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import typing
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pydantic
from pyqg_jax.parameterizations import ParameterizedModel
from pyqg_jax.state import Precision
from pyqg_jax.steppers import AB3Stepper, SteppedModel

from qgzoo import plugins, qg
from qgzoo.coarsen import AbstractCoarsener
from qgzoo.losses import AbstractLoss
from qgzoo.networks import AbstractParameterization, NoClosure, trainable
from qgzoo.reference import FIELDS, FieldStats
from qgzoo.rollout import initial_state, parameterized_model, rollout_loss
from qgzoo.spec import ComponentSpec, build_component

__all__ = [
    "ConformanceError", "check_coarsener", "check_component", "check_loss", "check_network",
    "check_spec", "check_stepper", "random_batch", "random_q", "realistic_stats",
]

log = logging.getLogger(__name__)

PRECISIONS = ("single", "double")
#: Per-layer rms of the fields of the small eddy reference (64 -> 16, Operator1).
REALISTIC_STD = {"q": (4e-6, 6.5e-7), "u": (2.1e-2, 4.6e-3), "v": (2.1e-2, 4.6e-3),
                 "q_forcing_total": (2.5e-12, 1.4e-13), "q_subgrid_forcing": (2.5e-12, 1.4e-13)}
Q_AMPLITUDE = REALISTIC_STD["q"]
_TARGETS = ("q_forcing_total", "q_subgrid_forcing")
_BATCH = 2


class ConformanceError(AssertionError):
    """A component breaks a property every component of its category must have."""


# ----------------------------------------------------------------------------
# Realistic inputs


def real_dtype(model) -> np.dtype:
    """The real dtype of a pyqg-jax model's fields (float32 or float64)."""
    return np.dtype(np.float32 if model.precision == Precision.SINGLE else np.float64)


def random_q(model, key: jax.Array, *, amplitude=Q_AMPLITUDE) -> jax.Array:
    """A random smooth PV field (nz, ny, nx) of ``model``, in 1/s, in the model's dtype.

    Each layer has a red spectrum (mode amplitude proportional to 1/kappa, so
    the variance per wavenumber shell falls as 1/kappa), zero mean, and rms
    ``amplitude[layer]`` in 1/s.
    """
    k = 2 * np.pi / model.L * np.fft.rfftfreq(model.nx, 1.0 / model.nx)
    l = 2 * np.pi / model.W * np.fft.fftfreq(model.ny, 1.0 / model.ny)
    kappa = np.sqrt(k[None, :] ** 2 + l[:, None] ** 2)
    spectrum = np.where(kappa > 0, 1.0 / np.where(kappa > 0, kappa, 1.0), 0.0)
    amplitude = jnp.asarray(amplitude, jnp.float64)
    return _random_field(key, spectrum, amplitude, model.nz, real_dtype(model))


@eqx.filter_jit
def _random_field(key, spectrum, amplitude, nz, dtype):
    shape = (nz, *spectrum.shape)
    real_key, imag_key = jax.random.split(key)
    coefficients = (jax.random.normal(real_key, shape, jnp.float64)
                    + 1j * jax.random.normal(imag_key, shape, jnp.float64)) * spectrum
    ny = spectrum.shape[0]
    q = jnp.fft.irfftn(coefficients, axes=(-2, -1), s=(ny, 2 * (spectrum.shape[1] - 1)))
    q = q / jnp.std(q, axis=(-2, -1), keepdims=True)
    return (q * amplitude[:, None, None]).astype(dtype)


def random_batch(model, key: jax.Array, n: int, *, amplitude=Q_AMPLITUDE) -> jax.Array:
    """``n`` fields of ``random_q``: (n, nz, ny, nx)."""
    return jnp.stack([random_q(model, k, amplitude=amplitude) for k in jax.random.split(key, n)])


def realistic_stats(nz: int = 2, dtype=np.float64) -> FieldStats:
    """Per-layer rms of the eddy reference (64 -> 16 points, Operator1), rounded: what
    the trainer would fit from data (q 1/s, u and v m/s, forcings 1/s^2)."""
    values = {name: REALISTIC_STD[name] + (REALISTIC_STD[name][-1],) * (nz - 2)
              for name in FIELDS}
    return FieldStats({name: jnp.asarray(v[:nz], dtype) for name, v in values.items()})


def _small_setup(config: str, hires_nx: int, lores_nx: int, precision: str):
    """The models of the checks and realistic stats in their dtype."""
    physics = qg.PRESETS[config]
    hires = qg.make_model(physics, hires_nx, precision)
    lores = qg.make_model(physics, lores_nx, precision)
    return hires, lores, realistic_stats(lores.nz, real_dtype(lores))


# ----------------------------------------------------------------------------
# Failing with a message that says what and where


def _describe(spec) -> str:
    category = getattr(spec, "category", "component")
    return f"{category} kind {getattr(spec, 'kind', '?')!r} ({type(spec).__name__})"


@contextlib.contextmanager
def _property(spec, name: str):
    """Turn any failure inside into a ConformanceError naming ``spec`` and the property."""
    try:
        yield
    except ConformanceError:
        raise
    except Exception as error:
        detail = (str(error) if isinstance(error, AssertionError)
                  else f"raised {type(error).__name__}: {error}")
        raise ConformanceError(f"{_describe(spec)}: {name}: {detail}") from error


def _require(condition, message: str):
    if not condition:
        raise AssertionError(message)


def _rtol(dtype) -> float:
    return 1e-4 if np.dtype(dtype) == np.float32 else 1e-9


def _close(actual, expected, rtol: float, what: str):
    actual, expected = np.asarray(actual), np.asarray(expected)
    _require(actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}")
    scale = max(float(np.max(np.abs(expected), initial=0.0)), np.finfo(np.float64).tiny)
    error = float(np.max(np.abs(actual - expected), initial=0.0)) / scale
    _require(error <= rtol, f"{what}: relative difference {error:.3g} > {rtol:g}")


def _field(value, shape, dtype, what: str):
    """A real, finite array of ``shape`` and ``dtype``."""
    _require(hasattr(value, "shape") and hasattr(value, "dtype"),
             f"{what} is a {type(value).__name__}, not an array")
    _require(tuple(value.shape) == tuple(shape), f"{what} has shape {tuple(value.shape)}, "
             f"expected {tuple(shape)}")
    _require(value.dtype == dtype, f"{what} has dtype {value.dtype}, expected {np.dtype(dtype)}"
             " (the model's dtype)")
    _require(bool(jnp.all(jnp.isfinite(value))), f"{what} is not finite")


def _finite_tree(tree, what: str):
    for leaf in jax.tree.leaves(tree):
        _require(bool(jnp.all(jnp.isfinite(leaf))), f"{what} is not finite")


# ----------------------------------------------------------------------------
# Every component


def check_component(spec: ComponentSpec, **options) -> None:
    """Check ``spec`` and what it builds against the rules of its category.

    Options are those of the category's function (``check_coarsener`` ...);
    ``registered=False`` accepts a spec class that is not in the current registry.
    """
    checks = {"coarsener": check_coarsener, "network": check_network,
              "loss": check_loss, "stepper": check_stepper}
    with _property(spec, "category"):
        _require(isinstance(spec, ComponentSpec),
                 f"{type(spec).__name__} is not a qgzoo.spec.ComponentSpec")
        _require(getattr(spec, "category", None) in checks,
                 f"category {getattr(spec, 'category', None)!r} is not one of {tuple(checks)}")
    checks[spec.category](spec, **options)


def check_spec(spec: ComponentSpec, *, registered: bool = True) -> None:
    """The spec's rules: a Literal ``kind`` default, frozen, strict, JSON round trip, schema,
    units on numbers, and (unless ``registered=False``) registered under its kind."""
    cls = type(spec)
    with _property(spec, "kind is a Literal default"):
        field = cls.model_fields.get("kind")
        _require(field is not None, "the spec has no kind field")
        args = typing.get_args(field.annotation)
        _require(typing.get_origin(field.annotation) is Literal and len(args) == 1,
                 f"kind is annotated {field.annotation!r}; declare kind: Literal['name'] = 'name'")
        _require(field.default == args[0] == spec.kind,
                 f"kind default {field.default!r}, Literal {args[0]!r} and value "
                 f"{spec.kind!r} must be the same string")
    with _property(spec, "frozen"):
        try:
            setattr(spec, "kind", spec.kind)
        except (pydantic.ValidationError, AttributeError, TypeError):
            pass
        else:
            raise AssertionError("assigning a field did not raise; set frozen=True "
                                 "(subclass a qgzoo spec base and keep its model_config)")
    with _property(spec, "unknown fields rejected"):
        try:
            cls.model_validate({**spec.model_dump(mode="json"), "qgzoo_unknown_field": 1})
        except pydantic.ValidationError:
            pass
        else:
            raise AssertionError("an unknown field was accepted; keep extra='forbid'")
    with _property(spec, "round trip"):
        dumped = spec.model_dump(mode="json")
        _require(dumped.get("kind") == spec.kind, f"model_dump(mode='json') lacks kind: {dumped}")
        back = cls.model_validate(dumped)
        _require(back == spec, f"model_validate(model_dump(mode='json')) gave {back!r}, "
                 f"not {spec!r}")
        back = cls.model_validate(json.loads(json.dumps(dumped)))
        _require(back == spec, f"through json.dumps/json.loads it became {back!r}")
        back = cls.model_validate_json(spec.model_dump_json())
        _require(back == spec, f"through model_dump_json it became {back!r}")
    with _property(spec, "JSON schema"):
        cls.model_json_schema()
    with _property(spec, "units of numbers"):
        undescribed = [name for name, info in cls.model_fields.items()
                       if _is_numeric(info.annotation) and not info.description]
        _require(not undescribed, f"numeric fields {undescribed} need a description that "
                 "gives their unit (pydantic.Field(description=...))")
    if registered:
        _check_registered(spec)


def _is_numeric(annotation) -> bool:
    if annotation in (int, float):
        return True
    return any(_is_numeric(arg) for arg in typing.get_args(annotation)
               if arg is not Ellipsis and not isinstance(arg, str))


def _check_registered(spec):
    with _property(spec, "registered"):
        registry = plugins.registry()
        key = (spec.category, spec.kind)
        if key in registry.ambiguous:
            origins = " and ".join(f"{r.plugin} ({r.distribution})"
                                   for r in registry.ambiguous[key])
            raise AssertionError(f"kind {spec.kind!r} is registered by both {origins}")
        registration = registry.kinds[spec.category].get(spec.kind)
        _require(registration is not None,
                 f"kind {spec.kind!r} is not in the current registry (installed "
                 f"{spec.category} kinds: {', '.join(sorted(registry.kinds[spec.category]))}); "
                 "register it in register_components, install the plugin and check "
                 "QGZOO_PLUGINS, or pass registered=False for a class defined in a test")
        _require(registration.spec_class is type(spec),
                 f"kind {spec.kind!r} is registered to {registration.spec_class.__qualname__} "
                 f"of plugin {registration.plugin!r}, not to {type(spec).__qualname__}")
        back = build_component(spec.category, spec.model_dump(mode="json"))
        _require(back == spec, f"validating its dump through the registry gave {back!r}")


# ----------------------------------------------------------------------------
# Coarseners


def check_coarsener(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
                    precisions=PRECISIONS, config: str = "eddy") -> None:
    """Check a coarsener spec: ``build(hires, lores)`` in both precisions, then ``coarsen``
    maps (nz, N, N) to (nz, n, n) in the model's dtype, finite, linear and mean
    preserving; the forcings have the same shape and are finite and not zero;
    all of it under jit and vmap, as the reference generation runs it."""
    check_spec(spec, registered=registered)
    for precision in precisions:
        hires, lores, _ = _small_setup(config, hires_nx, lores_nx, precision)
        _check_coarsener(spec, hires, lores, precision)


def _coarse_sample(coarsener, q_hires):
    return (coarsener.coarsen(q_hires), coarsener.q_forcing_total(q_hires),
            coarsener.q_subgrid_forcing(q_hires))


_coarse_batch_jit = eqx.filter_jit(jax.vmap(_coarse_sample, in_axes=(None, 0)))


def _check_coarsener(spec, hires, lores, precision):
    at = f" ({precision} precision)"
    dtype = real_dtype(hires)
    shape = (lores.nz, lores.ny, lores.nx)
    with _property(spec, "build" + at):
        coarsener = spec.build(hires, lores)
        _require(isinstance(coarsener, AbstractCoarsener),
                 f"build returned a {type(coarsener).__name__}, not a qgzoo.AbstractCoarsener")
    batch = random_batch(hires, jax.random.key(1), _BATCH + 1)
    x, y = batch[0], batch[-1]
    with _property(spec, "coarsen shape and dtype" + at):
        qbar = coarsener.coarsen(x)
        _field(qbar, shape, dtype, f"coarsen of a {hires.nx} x {hires.nx} field")
        _require(float(jnp.std(qbar)) > 0, "coarsen of a random field is constant")
    with _property(spec, "linear" + at):
        a, b = 2.5, -0.75
        _close(coarsener.coarsen(a * x + b * y), a * qbar + b * coarsener.coarsen(y),
               _rtol(dtype), "coarsen(a x + b y) vs a coarsen(x) + b coarsen(y)")
    with _property(spec, "mean preserved" + at):
        offset = jnp.asarray([2e-6, -5e-7], dtype)[:, None, None]
        _close(jnp.mean(coarsener.coarsen(x + offset), axis=(-2, -1)),
               jnp.mean(x + offset, axis=(-2, -1)), _rtol(dtype), "layer means after coarsening")
    with _property(spec, "jit and vmap over a batch" + at):
        # As the reference generation runs it; the forcings are only computed this way,
        # since op-by-op pyqg-jax takes longer than compiling.
        batched_q, *forcings = _coarse_batch_jit(coarsener, batch)
        for i in range(len(batch)):
            _close(batched_q[i], coarsener.coarsen(batch[i]), _rtol(dtype) * 10,
                   f"coarsen of sample {i} under jit(vmap) vs eagerly")
    with _property(spec, "forcings" + at):
        for name, forcing in zip(_TARGETS, forcings):
            _field(forcing, batch.shape[:1] + shape, dtype, f"{name} (a vmapped batch)")
            _require(float(jnp.max(jnp.abs(forcing))) > 0, f"{name} is zero for random fields")


# ----------------------------------------------------------------------------
# Networks


def check_network(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
                  precisions=PRECISIONS, config: str = "eddy", target: str = "q_forcing_total",
                  trainable_arrays: bool | None = None) -> None:
    """Check a network spec: ``build(stats, key=, target=)`` returns an
    AbstractParameterization whose ``q_forcing`` has the model's shape and dtype
    in both precisions, steps in a pyqg-jax ParameterizedModel, works under jit
    and vmap, is differentiable, and can be restored from weights built on
    placeholder stats (as ``qgzoo.load`` does).

    ``trainable_arrays``: None accepts a network with or without trainable
    arrays (a closure may have none); True or False requires one or the other.
    """
    check_spec(spec, registered=registered)
    for precision in precisions:
        _check_network(spec, *_small_setup(config, hires_nx, lores_nx, precision), precision,
                       target, trainable_arrays)
    _check_network_restore(spec, *_small_setup(config, hires_nx, lores_nx, "double"), target)


def _full_states(model, q_batch):
    return jax.vmap(lambda q: model.get_full_state(qg.state_from_q(model, q)))(q_batch)


# Shared by every network: the q -> full state inversion is compiled once per model.
_full_states_jit = eqx.filter_jit(_full_states)
_forcing_batch_jit = eqx.filter_jit(
    lambda network, model, full: jax.vmap(lambda f: network.q_forcing(f, model))(full))


def _run(model, q, steps: int):
    state = initial_state(model, q)
    return jax.lax.fori_loop(0, steps, lambda _, s: model.step_model(s), state)


def _trajectory(model, q, steps: int):
    """q and t after each of ``steps`` steps: (steps, nz, ny, nx) and (steps,)."""
    def step(state, _):
        state = model.step_model(state)
        return state, (state.state.model_state.q, state.t)
    return jax.lax.scan(step, initial_state(model, q), length=steps)[1]


_run_batch_jit = eqx.filter_jit(jax.vmap(_run, in_axes=(None, 0, None)))
_trajectory_batch_jit = eqx.filter_jit(jax.vmap(_trajectory, in_axes=(None, 0, None)))


def _take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _check_network(spec, hires, lores, stats, precision, target, trainable_arrays):
    at = f" ({precision} precision)"
    dtype = real_dtype(lores)
    shape = (lores.nz, lores.ny, lores.nx)
    with _property(spec, "build" + at):
        for other in _TARGETS:
            spec.build(FieldStats.placeholder(lores.nz), key=jax.random.key(0), target=other)
        network = spec.build(stats, key=jax.random.key(0), target=target)
        _require(isinstance(network, AbstractParameterization),
                 f"build returned a {type(network).__name__}, "
                 "not a qgzoo.AbstractParameterization")
    batch = random_batch(lores, jax.random.key(3), _BATCH)
    full = _full_states_jit(lores, batch)
    with _property(spec, "q_forcing shape and dtype" + at):
        forcings = [network.q_forcing(_take(full, i), lores) for i in range(_BATCH)]
        _field(forcings[0], shape, dtype, "q_forcing")
    with _property(spec, "jit and vmap over a batch" + at):
        batched = _forcing_batch_jit(network, lores, full)
        for i in range(_BATCH):
            _close(batched[i], forcings[i], 1e-4,
                   f"q_forcing of sample {i} under jit(vmap) vs eagerly")
    with _property(spec, "steps in a pyqg-jax ParameterizedModel" + at):
        model = SteppedModel(ParameterizedModel(lores, param_func=network), AB3Stepper(dt=3600.0))
        q_end = _run_batch_jit(model, batch, 3).state.model_state.q
        _field(q_end, batch.shape, dtype, "q after 3 steps (a vmapped batch)")
    with _property(spec, "differentiable" + at):
        params, static = eqx.partition(network, trainable(network))
        weights = jax.random.normal(jax.random.key(4), shape, dtype)
        scale = stats.std[target][:, None, None]

        def scalar(params, full):
            forcing = eqx.combine(params, static).q_forcing(full, lores)
            return jnp.sum(forcing / scale * weights)

        grads_params, grads_full = eqx.filter_jit(jax.grad(scalar, argnums=(0, 1)))(
            params, _take(full, 0))
        _finite_tree(grads_full, "the gradient with respect to the full state (q, u, v, ...)")
        leaves = jax.tree.leaves(grads_params)
        if not leaves:
            _require(trainable_arrays is not True,
                     "it has no trainable arrays (eqx.partition with qgzoo.networks.trainable)")
            log.info("%s has no trainable arrays; no gradient to check", _describe(spec))
        else:
            _require(trainable_arrays is not False, f"it has {len(leaves)} trainable arrays")
            _finite_tree(grads_params, "the gradient with respect to the trainable arrays")
            _require(any(bool(jnp.any(g != 0)) for g in leaves),
                     "the gradient with respect to the trainable arrays is zero")


def _check_network_restore(spec, hires, lores, stats, target):
    full = _take(_full_states_jit(lores, random_batch(lores, jax.random.key(7), 1)), 0)
    with _property(spec, "weights restore into a placeholder build"):
        network = spec.build(stats, key=jax.random.key(5), target=target)
        skeleton = spec.build(FieldStats.placeholder(lores.nz), key=jax.random.key(6),
                              target=target)
        buffer = io.BytesIO()
        eqx.tree_serialise_leaves(buffer, network)
        buffer.seek(0)
        restored = eqx.tree_deserialise_leaves(buffer, skeleton)
        _close(restored.q_forcing(full, lores), network.q_forcing(full, lores), 1e-6,
               "q_forcing after tree_serialise_leaves into a build from "
               "FieldStats.placeholder() (what qgzoo.load does)")


# ----------------------------------------------------------------------------
# Losses


def check_loss(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
               precisions=PRECISIONS, config: str = "eddy", target: str = "q_forcing_total",
               identical_is_zero: bool = True, normalised: bool = True) -> None:
    """Check a loss spec: ``build(stats, lores, target)``; each term the spec says it
    needs returns a finite scalar in its inputs' dtype, zero for identical inputs
    (or, with ``identical_is_zero=False``, below its value for different ones),
    positive and O(1) for independent realistic fields (``normalised``), with
    finite gradients, under jit and vmap; a term it does not need is zero; a
    rollout loss runs in ``qgzoo.rollout.rollout_loss``."""
    check_spec(spec, registered=registered)
    with _property(spec, "needs_rollout or needs_forcing"):
        needs = {"state_term": bool(spec.needs_rollout()),
                 "forcing_term": bool(spec.needs_forcing())}
        _require(any(needs.values()), "neither needs_rollout() nor needs_forcing() is True: "
                 "the trainer would never call it")
    for precision in precisions:
        _, lores, stats = _small_setup(config, hires_nx, lores_nx, precision)
        at = f" ({precision} precision)"
        with _property(spec, "build" + at):
            loss = spec.build(stats, lores, target)
            _require(isinstance(loss, AbstractLoss),
                     f"build returned a {type(loss).__name__}, not a qgzoo.AbstractLoss")
        for term, needed in needs.items():
            amplitude = Q_AMPLITUDE if term == "state_term" else stats.std[target]
            _check_loss_term(spec, getattr(loss, term), term, needed, lores, amplitude, at,
                             identical_is_zero, normalised)
        if needs["state_term"]:
            _check_rollout_loss(spec, loss, lores, at)


_term_grad_jit = eqx.filter_jit(lambda term, pred, ref: jax.grad(term)(pred, ref))
_term_batch_jit = eqx.filter_jit(lambda term, pred, ref: jax.vmap(term)(pred, ref))


def _check_loss_term(spec, term, name, needed, lores, amplitude, at, identical_is_zero,
                     normalised):
    pred = random_batch(lores, jax.random.key(8), _BATCH, amplitude=amplitude)
    ref = random_batch(lores, jax.random.key(9), _BATCH, amplitude=amplitude)
    dtype = pred.dtype
    with _property(spec, f"{name} value" + at):
        same, different = term(pred[0], pred[0]), term(pred[0], ref[0])
        if not needed:
            _require(float(same) == 0 and float(different) == 0,
                     f"{name} is {float(different):.3g}, not zero, but the spec's "
                     f"{'needs_rollout' if name == 'state_term' else 'needs_forcing'}() is "
                     "False: the trainer never calls it")
            return
        for value, what in ((same, "identical"), (different, "different")):
            # The rollout accumulates the loss in a scan whose carry has the inputs' dtype.
            _field(value, (), dtype, f"{name} of {what} fields")
        if identical_is_zero:
            _require(abs(float(same)) <= 1e-6 * abs(float(different)),
                     f"{name} of identical fields is {float(same):.3g}, not zero")
        _require(float(different) > max(float(same), 0.0), f"{name} of different fields is "
                 f"{float(different):.3g}, not above {max(float(same), 0.0):.3g} (identical)")
        if normalised:
            _require(1e-3 < float(different) < 1e3, f"{name} of independent fields of "
                     f"realistic amplitude is {float(different):.3g}, not O(1): normalise "
                     "by the target's variance")
    with _property(spec, f"{name} differentiable" + at):
        grad = _term_grad_jit(term, pred[0], ref[0])
        _field(grad, pred.shape[1:], dtype, f"gradient of {name} with respect to the prediction")
        _require(bool(jnp.any(grad != 0)), f"gradient of {name} is zero for different fields")
    with _property(spec, f"{name} jit and vmap" + at):
        batched = _term_batch_jit(term, pred, ref)
        for i in range(_BATCH):
            _close(batched[i], term(pred[i], ref[i]), _rtol(dtype) * 10,
                   f"{name} of sample {i} under jit(vmap) vs eagerly")


def _check_rollout_loss(spec, loss, lores, at):
    with _property(spec, "state_term in qgzoo.rollout.rollout_loss" + at):
        model = parameterized_model(lores, NoClosure(), AB3Stepper(dt=3600.0))
        q_ref = random_batch(lores, jax.random.key(10), 3)

        def total(q_ref):
            return rollout_loss(model, q_ref, steps_per_sample=1, chunk=2,
                                state_term=loss.state_term)

        _field(jax.jit(total)(q_ref), (), q_ref.dtype, "the rollout loss")


# ----------------------------------------------------------------------------
# Steppers


def check_stepper(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
                  precisions=PRECISIONS, config: str = "eddy", steps: int = 3,
                  consistency: float = 0.25) -> None:
    """Check a stepper spec: ``build()`` steps the low-resolution model (through
    ``qgzoo.rollout.parameterized_model``) in both precisions; time advances by
    ``dt`` per step; q stays finite in the model's dtype; the first step agrees
    with the model's tendency, |(q1 - q0)/dt - dq/dt| <= ``consistency`` |dq/dt|
    at the scales the model's filter leaves alone; jit, vmap and gradients through
    ``steps`` steps work."""
    check_spec(spec, registered=registered)
    for precision in precisions:
        _, lores, _ = _small_setup(config, hires_nx, lores_nx, precision)
        _check_stepper(spec, lores, precision, steps, consistency)


_tendency_jit = eqx.filter_jit(qg.tendency)


def _check_stepper(spec, lores, precision, steps, consistency):
    at = f" ({precision} precision)"
    dtype = real_dtype(lores)
    shape = (lores.nz, lores.ny, lores.nx)
    with _property(spec, "build" + at):
        model = parameterized_model(lores, NoClosure(), spec.build())
    batch = random_batch(lores, jax.random.key(11), _BATCH)
    with _property(spec, f"{steps} steps under jit and vmap over a batch" + at):
        q, t = _trajectory_batch_jit(model, batch, steps)
        _field(q, (_BATCH, steps, *shape), dtype, f"q after each of {steps} steps")
        _close(t[0], spec.dt * np.arange(1, steps + 1), 1e-5,
               f"time after each step of dt = {spec.dt} s")
    with _property(spec, "consistent with the model's tendency" + at):
        q0 = batch[0].astype(np.float64)
        q1 = q[0, 0].astype(np.float64)
        resolved = lores.filtr >= 1
        rate = jnp.fft.rfftn((q1 - q0) / spec.dt, axes=(-2, -1)) * resolved
        tendency = _tendency_jit(lores, batch[0]).astype(np.float64)
        tendency = jnp.fft.rfftn(tendency, axes=(-2, -1)) * resolved
        error = float(jnp.linalg.norm(rate - tendency) / jnp.linalg.norm(tendency))
        _require(error <= consistency, f"(q1 - q0) / dt differs from dq/dt by {error:.3g} "
                 f"(relative, resolved scales), more than {consistency}")
    with _property(spec, f"differentiable through {steps} steps" + at):
        weights = jax.random.normal(jax.random.key(12), shape, dtype)

        def scalar(q):
            return jnp.sum(_run(model, q, steps).state.model_state.q / Q_AMPLITUDE[0] * weights)

        grad = eqx.filter_jit(jax.grad(scalar))(batch[0])
        _field(grad, shape, dtype, "the gradient of the final q with respect to the initial q")
        _require(bool(jnp.any(grad != 0)), "the gradient with respect to the initial q is zero")
