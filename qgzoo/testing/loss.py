"""Conformance checks of losses."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from pyqg_jax.steppers import AB3Stepper

from qgzoo.components.losses import AbstractLoss
from qgzoo.components.networks import NoClosure
from qgzoo.simulate.rollout import parameterized_model, rollout_loss
from qgzoo.testing.assertions import assert_close, assert_field, checking, require, rtol_of
from qgzoo.testing.inputs import BATCH, PRECISIONS, Q_AMPLITUDE, random_batch, small_setup
from qgzoo.testing.spec import check_spec


def check_loss(spec, *, registered: bool = True, hires_nx: int = 32, lores_nx: int = 16,
               precisions=PRECISIONS, config: str = "eddy", target: str = "q_forcing_total",
               identical_is_zero: bool = True, normalised: bool = True) -> None:
    """Check a loss spec: ``build(stats, lores, target)``; each term the spec says it
    needs returns a finite scalar in its inputs' dtype, zero for identical inputs
    (or, with ``identical_is_zero=False``, below its value for different ones),
    positive and O(1) for independent realistic fields (``normalised``), with
    finite gradients, under jit and vmap; a term it does not need is zero; a
    rollout loss runs in ``qgzoo.simulate.rollout.rollout_loss``, and its
    ``ensemble_term`` of one member is that member's ``state_term``."""
    check_spec(spec, registered=registered)
    with checking(spec, "needs_rollout or needs_forcing"):
        needs = {"state_term": bool(spec.needs_rollout()),
                 "forcing_term": bool(spec.needs_forcing())}
        require(any(needs.values()), "neither needs_rollout() nor needs_forcing() is True: "
                "the trainer would never call it")
    for precision in precisions:
        _, lores, stats = small_setup(config, hires_nx, lores_nx, precision)
        at = f" ({precision} precision)"
        with checking(spec, "build" + at):
            loss = spec.build(stats, lores, target)
            require(isinstance(loss, AbstractLoss),
                    f"build returned a {type(loss).__name__}, not a qgzoo.AbstractLoss")
        for term, needed in needs.items():
            amplitude = Q_AMPLITUDE if term == "state_term" else stats.std[target]
            function = getattr(loss, term)
            if term == "state_term" and spec.pools_window():
                # checked as the loss of a window of one state
                function = lambda p, r, loss=loss: (  # noqa: E731
                    loss.state_term(p, r) + loss.window_term(p[None], r[None]))
            _check_loss_term(spec, function, term, needed, lores, amplitude, at,
                             identical_is_zero, normalised)
        if needs["state_term"]:
            _check_rollout_loss(spec, loss, lores, at)


_term_grad_jit = eqx.filter_jit(lambda term, pred, ref: jax.grad(term)(pred, ref))
_term_batch_jit = eqx.filter_jit(lambda term, pred, ref: jax.vmap(term)(pred, ref))


def _check_loss_term(spec, term, name, needed, lores, amplitude, at, identical_is_zero,
                     normalised):
    pred = random_batch(lores, jax.random.key(8), BATCH, amplitude=amplitude)
    ref = random_batch(lores, jax.random.key(9), BATCH, amplitude=amplitude)
    dtype = pred.dtype
    with checking(spec, f"{name} value" + at):
        same, different = term(pred[0], pred[0]), term(pred[0], ref[0])
        if not needed:
            require(float(same) == 0 and float(different) == 0,
                    f"{name} is {float(different):.3g}, not zero, but the spec's "
                    f"{'needs_rollout' if name == 'state_term' else 'needs_forcing'}() is "
                    "False: the trainer never calls it")
            return
        for value, what in ((same, "identical"), (different, "different")):
            # The rollout accumulates the loss in a scan whose carry has the inputs' dtype.
            assert_field(value, (), dtype, f"{name} of {what} fields")
        if identical_is_zero:
            require(abs(float(same)) <= 1e-6 * abs(float(different)),
                    f"{name} of identical fields is {float(same):.3g}, not zero")
        require(float(different) > max(float(same), 0.0), f"{name} of different fields is "
                f"{float(different):.3g}, not above {max(float(same), 0.0):.3g} (identical)")
        if normalised:
            require(1e-3 < float(different) < 1e3, f"{name} of independent fields of "
                    f"realistic amplitude is {float(different):.3g}, not O(1): normalise "
                    "by the target's variance")
    with checking(spec, f"{name} differentiable" + at):
        grad = _term_grad_jit(term, pred[0], ref[0])
        assert_field(grad, pred.shape[1:], dtype,
                     f"gradient of {name} with respect to the prediction")
        require(bool(jnp.any(grad != 0)), f"gradient of {name} is zero for different fields")
    with checking(spec, f"{name} jit and vmap" + at):
        batched = _term_batch_jit(term, pred, ref)
        for i in range(BATCH):
            assert_close(batched[i], term(pred[i], ref[i]), rtol_of(dtype) * 10,
                         f"{name} of sample {i} under jit(vmap) vs eagerly")


def _check_rollout_loss(spec, loss, lores, at):
    with checking(spec, "state_term in qgzoo.simulate.rollout.rollout_loss" + at):
        model = parameterized_model(lores, NoClosure(), AB3Stepper(dt=3600.0))
        q_ref = random_batch(lores, jax.random.key(10), 3)

        def total(q_ref):
            return rollout_loss(model, q_ref, steps_per_sample=1, chunk=2,
                                state_term=loss.state_term,
                                window_term=loss.window_term if spec.pools_window() else None)

        assert_field(jax.jit(total)(q_ref), (), q_ref.dtype, "the rollout loss")
    with checking(spec, "ensemble_term (training.members)" + at):
        members = random_batch(lores, jax.random.key(11), 3)
        one = loss.ensemble_term(members[:1], q_ref[1])
        alone = loss.state_term(members[0], q_ref[1])
        assert_close(one, alone, rtol_of(q_ref.dtype) * 10,
                     "ensemble_term of a one-member ensemble vs state_term of that member")
        assert_field(loss.ensemble_term(members, q_ref[1]), (), q_ref.dtype,
                     "ensemble_term of 3 members")
