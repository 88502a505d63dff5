"""Neural closures: pyqg-jax plumbing, float32 internals, scaling, size and locality."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyqg_jax.parameterizations import ParameterizedModel
from pyqg_jax.steppers import EulerStepper, SteppedModel

import qgzoo
from qgzoo.physics import qg
from qgzoo.components.networks import CNNSpec, MLPSpec, NeuralClosure, Scale, trainable
from test_coarsen import numpy_curl, numpy_div, numpy_filtr

from qgzoo.core.fields import FieldStats
from qgzoo.data.reference import SMALL_REFERENCE

SPECS = {
    "cnn": CNNSpec(channels=(8,), kernel_sizes=(3, 3)),
    "mlp": MLPSpec(stencil=3, width=16, depth=2),
}


@pytest.fixture(scope="module")
def stats(small_data):
    return small_data.split("train").stats()


@pytest.fixture(scope="module")
def lores():
    return qg.make_model(qg.PRESETS["eddy"], 16)


@pytest.fixture(scope="module")
def q_test(small_data):
    return small_data.split("test").fields["q"][0, 10]


def full_state(model, q):
    return model.get_full_state(qg.state_from_q(model, jnp.asarray(q)))


def numpy_train_std(small_data, name):
    values = small_data.split("train").fields[name]
    return np.sqrt(np.mean(values**2, axis=(0, 1, 3, 4)))


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_closure_is_a_pyqg_jax_parameterization(kind, stats, lores, q_test):
    closure = SPECS[kind].build(stats, key=jax.random.key(0))
    dt = 3600.0
    with_closure = SteppedModel(ParameterizedModel(lores, param_func=closure), EulerStepper(dt=dt))
    without = SteppedModel(lores, EulerStepper(dt=dt))
    inner = qg.state_from_q(lores, jnp.asarray(q_test))
    state = with_closure.initialize_stepper_state(with_closure.model.initialize_param_state(inner))
    stepped = jax.jit(with_closure.step_model)(state)
    plain = jax.jit(without.step_model)(without.initialize_stepper_state(inner))

    forcing = np.asarray(closure.q_forcing(lores.get_full_state(inner), lores))
    assert forcing.shape == (2, 16, 16) and np.abs(forcing).max() > 0
    # The updates differ by exactly the forcing ...
    extra = (with_closure.model.get_updates(state.state).model_state.qh
             - lores.get_updates(inner).qh)
    np.testing.assert_allclose(np.fft.irfft2(np.asarray(extra), s=(16, 16)), forcing,
                               rtol=0, atol=1e-12 * np.abs(forcing).max())
    # ... and an Euler step by dt times the filtered forcing.
    delta = np.asarray(stepped.state.model_state.q) - np.asarray(plain.state.q)
    expected = np.fft.irfft2(numpy_filtr(16) * dt * np.fft.rfft2(forcing), s=(16, 16))
    # The jitted step evaluates the float32 network with another op order than eager.
    np.testing.assert_allclose(delta, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


class DtypeSpy(eqx.Module):
    """Wraps a core and records the dtype of what it is fed."""

    inner: eqx.Module
    seen: list = eqx.field(static=True)

    def __call__(self, x):
        self.seen.append(x.dtype)
        return self.inner(x)


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@pytest.mark.parametrize("precision", ["double", "single"])
def test_network_runs_in_float32_and_returns_the_model_dtype(kind, precision, stats, q_test):
    closure = SPECS[kind].build(stats, key=jax.random.key(1))
    weights = jax.tree.leaves(eqx.filter(closure.core, eqx.is_inexact_array))
    assert weights and {w.dtype for w in weights} == {jnp.dtype(jnp.float32)}
    seen = []
    spied = NeuralClosure(DtypeSpy(closure.core, seen), closure.inputs,
                          closure.input_scale, closure.output_scale)
    model = qg.make_model(qg.PRESETS["eddy"], 16, precision)
    full = full_state(model, q_test.astype(model.filtr.dtype))
    out = spied.q_forcing(full, model)
    assert seen == [jnp.dtype(jnp.float32)]
    assert out.dtype == full.q.dtype == {"double": jnp.float64, "single": jnp.float32}[precision]


class Identity(eqx.Module):
    def __call__(self, x):
        return x


class TakeChannels(eqx.Module):
    start: int = eqx.field(static=True)
    count: int = eqx.field(static=True, default=2)

    def __call__(self, x):
        return x[self.start: self.start + self.count]


def test_scaling_arithmetic_by_hand(lores, q_test):
    full = full_state(lores, q_test)
    q, u = np.asarray(full.q), np.asarray(full.u)
    s_q, s_u, s_out = np.array([2e-6, 5e-7]), np.array([0.02, 0.004]), np.array([3e-12, 4e-13])
    # Identity core: S = (q / std_q) * std_out, per layer.
    closure = NeuralClosure(Identity(), ("q",), Scale(jnp.asarray(s_q)), Scale(jnp.asarray(s_out)))
    np.testing.assert_allclose(np.asarray(closure.q_forcing(full, lores)),
                               q / s_q[:, None, None] * s_out[:, None, None], rtol=1e-6)
    # Inputs are stacked in the declared order, each layer with its own std.
    both = NeuralClosure(TakeChannels(2), ("q", "u"), Scale(jnp.asarray(np.r_[s_q, s_u])),
                         Scale(jnp.asarray(s_out)))
    np.testing.assert_allclose(np.asarray(both.q_forcing(full, lores)),
                               u / s_u[:, None, None] * s_out[:, None, None], rtol=1e-6)


@pytest.mark.parametrize("target", ["q_subgrid_flux", "momentum_subgrid_forcing"])
def test_flux_and_momentum_closures_convert_by_hand(target, lores, q_test):
    full = full_state(lores, q_test)
    q, u = np.asarray(full.q), np.asarray(full.u)
    s_q, s_u = np.array([2e-6, 5e-7]), np.array([0.02, 0.004])
    s_out = np.array([3e-7, 4e-8, 5e-7, 6e-8])  # parts one after the other, each per layer
    # Identity core: the parts are (q / std_q, u / std_u) * std_out.
    closure = NeuralClosure(TakeChannels(0, 4), ("q", "u"), Scale(jnp.asarray(np.r_[s_q, s_u])),
                            Scale(jnp.asarray(s_out)), target)
    first = q / s_q[:, None, None] * s_out[:2, None, None]
    second = u / s_u[:, None, None] * s_out[2:, None, None]
    want = -numpy_div(first, second) if target == "q_subgrid_flux" else numpy_curl(first, second)
    got = np.asarray(closure.q_forcing(full, lores))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    # Both are derivatives: the domain mean of q is kept, to rounding.
    assert np.abs(got.mean(axis=(-2, -1))).max() < 1e-6 * np.abs(got).max()


@pytest.mark.parametrize("kind", ["cnn", "cnn-per-layer", "mlp"])
def test_networks_predict_every_part_of_a_flux(kind, lores, q_test):
    spec = {"cnn-per-layer": CNNSpec(channels=(4,), kernel_sizes=(3, 3), per_layer=True)}.get(
        kind) or SPECS[kind]
    closure = spec.build(FieldStats.placeholder(), key=jax.random.key(1), target="q_subgrid_flux")
    full = full_state(lores, q_test)
    x = np.asarray(full.q) / np.asarray(closure.input_scale.std)[:, None, None]
    assert closure.core(jnp.asarray(x, jnp.float32)).shape == (4, 16, 16)
    assert closure.output_scale.std.shape == (4,)
    if kind == "cnn-per-layer":
        assert len(closure.core.nets) == 4
    forcing = np.asarray(closure.q_forcing(full, lores))
    assert forcing.shape == (2, 16, 16) and np.abs(forcing).max() > 0


@pytest.mark.parametrize("target", ["q_forcing_total", "q_subgrid_forcing"])
def test_built_scales_are_the_training_rms(target, stats, small_data):
    spec = CNNSpec(channels=(4,), kernel_sizes=(3, 3), inputs=("q", "u", "v"))
    closure = spec.build(stats, key=jax.random.key(0), target=target)
    expected_in = np.concatenate([numpy_train_std(small_data, name) for name in ("q", "u", "v")])
    np.testing.assert_allclose(np.asarray(closure.input_scale.std), expected_in, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(closure.output_scale.std),
                               numpy_train_std(small_data, target), rtol=1e-12)


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array)))


def test_fullycnn_size_and_receptive_field(stats):
    spec = CNNSpec(preset="fullycnn")
    closure = spec.build(stats, key=jax.random.key(0))
    # By hand: a k x k conv from c_in to c_out has k*k*c_in*c_out + c_out numbers,
    # an affine layer two per channel (scale and shift); one network per output
    # layer, each from 2 inputs to 1 output:
    convs = ((5 * 5 * 2 * 128 + 128) + (5 * 5 * 128 * 64 + 64) + (3 * 3 * 64 * 32 + 32)
             + 4 * (3 * 3 * 32 * 32 + 32) + (3 * 3 * 32 * 1 + 1))
    norms = 2 * (128 + 64 + 5 * 32)
    assert convs + norms == 267_841  # per network, as published (SCIENCE.md)
    assert [_count(net) for net in closure.core.nets] == [267_841] * 2
    params, _ = eqx.partition(closure, trainable(closure))
    assert _count(params) == 2 * 267_841  # the scales are not trained
    assert closure.input_scale.mean is not None  # inputs standardised by mean and std

    # Receptive field 1 + 2*(2 + 2) + 6*(1 + 1) = 21: the network is local.
    core = closure.core
    x = jax.random.normal(jax.random.key(2), (2, 32, 32), jnp.float32)
    bump = x.at[0, 16, 16].add(3.0)
    delta = np.asarray(core(bump) - core(x))
    # The output's mean is removed, which moves every point a little: look at the
    # change beyond that shift.
    changed = np.abs(delta - np.median(delta, axis=(1, 2), keepdims=True)).max(axis=0) > 1e-5
    rows, cols = np.nonzero(changed)
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (21, 21)
    assert (rows.min(), cols.min()) == (6, 6)
    # Each layer's output has zero spatial mean.
    np.testing.assert_allclose(np.asarray(core(x)).mean(axis=(1, 2)), 0, atol=1e-6)


@pytest.mark.parametrize("stencil", [3, 5])
def test_mlp_is_local_on_a_periodic_grid(stencil, stats):
    closure = MLPSpec(stencil=stencil, width=32, depth=2).build(stats, key=jax.random.key(3))
    x = jax.random.normal(jax.random.key(4), (2, 16, 16), jnp.float32)
    row, col = 0, 5  # on the edge: the neighbourhood wraps to row 15 (and 14)
    bump = x.at[1, row, col].add(2.0)
    changed = np.abs(np.asarray(closure.core(bump) - closure.core(x))).max(axis=0) > 0
    half = stencil // 2
    inside = np.zeros((16, 16), bool)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            inside[(row + dy) % 16, (col + dx) % 16] = True
    assert not (changed & ~inside).any()
    assert changed[row, col] and changed[(row - 1) % 16].any()


def test_one_training_step_leaves_the_scales_alone(small_data):
    # Decoupled weight decay would shrink every trained array, gradient or not.
    experiment = qgzoo.Experiment(
        reference=SMALL_REFERENCE,
        network={"kind": "cnn", "channels": [8], "kernel_sizes": [3, 3]},
        loss={"kind": "forcing_mse"},
        optimizer={"name": "adamw", "learning_rate": 1e-2, "weight_decay": 0.5},
        training={"steps": 1, "batch_size": 2, "rollout_steps": 0})
    closure = qgzoo.train(experiment, data=small_data, progress=False).parameterization
    untrained = qgzoo.train(experiment.model_copy(update={
        "training": experiment.training.model_copy(update={"steps": 0})}),
        data=small_data, progress=False).parameterization
    np.testing.assert_array_equal(np.asarray(closure.input_scale.std),
                                  np.asarray(untrained.input_scale.std))
    np.testing.assert_array_equal(np.asarray(closure.output_scale.std),
                                  np.asarray(untrained.output_scale.std))
    np.testing.assert_allclose(np.asarray(closure.input_scale.std),
                               numpy_train_std(small_data, "q"), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(closure.output_scale.std),
                               numpy_train_std(small_data, "q_forcing_total"), rtol=1e-12)
    moved = [not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(eqx.filter(closure.core, eqx.is_inexact_array)),
        jax.tree.leaves(eqx.filter(untrained.core, eqx.is_inexact_array)))]
    assert all(moved)
