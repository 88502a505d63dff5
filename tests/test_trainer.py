"""The trainer: determinism, resume, save/load, skipped updates, modes, curriculum, memory."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError
from pyqg_jax.steppers import AB3Stepper

import qgzoo
from qgzoo.physics import qg
from qgzoo.components.networks import CNNSpec, trainable
from qgzoo.core.fields import FieldStats
from qgzoo.components.losses import StateMSESpec
from qgzoo.simulate.rollout import parameterized_model, rollout_loss
from qgzoo.training.trainer import Setup, draw_windows, parameter_paths

from qgzoo.data.reference import SMALL_REFERENCE

TINY_CNN = {"kind": "cnn", "channels": [8], "kernel_sizes": [3, 3]}


def experiment(loss="forcing_mse", optimizer=None, **training):
    training = {"steps": 6, "batch_size": 2, "rollout_steps": 0, **training}
    return qgzoo.Experiment(reference=SMALL_REFERENCE, network=TINY_CNN, loss={"kind": loss},
                            optimizer=optimizer or {}, training=training)


def weights(parameterization):
    return jax.tree.leaves(eqx.filter(parameterization, eqx.is_inexact_array))


def same_weights(a, b):
    la, lb = weights(a), weights(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def losses(history):
    return [(h["step"], h["loss"], h["finite"], h["rollout_steps"]) for h in history]


@pytest.fixture(scope="module")
def offline_run(small_data):
    """Six offline updates, seed 0, no output folder."""
    return qgzoo.train(experiment(), data=small_data, progress=False)


def test_training_is_deterministic_in_its_seed(small_data, offline_run):
    again = qgzoo.train(experiment(), data=small_data, progress=False)
    assert same_weights(again.parameterization, offline_run.parameterization)
    assert losses(again.history) == losses(offline_run.history)
    other = qgzoo.train(experiment(seed=1), data=small_data, progress=False)
    trained_arrays = [jax.tree.leaves(eqx.filter(p, trainable(p)))
                      for p in (other.parameterization, offline_run.parameterization)]
    assert not any(np.array_equal(x, y) for x, y in zip(*trained_arrays))
    assert losses(other.history) != losses(offline_run.history)


def _log_steps(folder):
    return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]


def test_resume_reaches_the_uninterrupted_weights(small_data, offline_run, tmp_path):
    spec = experiment(checkpoint_every=2)
    first = qgzoo.train(spec, tmp_path, data=small_data, progress=False, stop_after=3)
    assert [h["step"] for h in first.history] == [0, 1, 2]
    assert _log_steps(tmp_path) == [0, 1, 2]
    # A crash after logging update 3 but before checkpointing it leaves a line the
    # resumed run must replace, not repeat.
    with (tmp_path / "log.jsonl").open("a") as log:
        log.write(json.dumps({"step": 3, "loss": 123.0, "finite": True, "rollout_steps": 0,
                              "skipped": 0, "seconds": 0.0}) + "\n")
    resumed = qgzoo.train(spec, tmp_path, data=small_data, progress=False)
    assert same_weights(resumed.parameterization, offline_run.parameterization)
    assert _log_steps(tmp_path) == list(range(6))
    assert losses(resumed.history) == losses(offline_run.history)


def test_saved_parameterization_loads_exactly(small_data, tmp_path):
    trained = qgzoo.train(experiment(steps=3), tmp_path, data=small_data, progress=False)
    loaded = qgzoo.load(tmp_path)
    assert loaded.experiment == trained.experiment
    assert losses(loaded.history) == losses(trained.history)
    lores = trained.experiment.reference.lores_model()
    held_out = jnp.asarray(small_data.split("test").fields["q"][0, ::50])

    def forcing(parameterization):
        return jax.vmap(lambda q: parameterization.q_forcing(
            lores.get_full_state(qg.state_from_q(lores, q)), lores))(held_out)

    original, reloaded = np.asarray(forcing(trained.parameterization)), np.asarray(
        forcing(loaded.parameterization))
    assert np.abs(original).max() > 0
    np.testing.assert_array_equal(reloaded, original)


def test_non_finite_updates_are_skipped_and_counted(small_data):
    # Run 0 scaled by 1e100: a rollout from it overflows within three steps, while the
    # other runs' windows stay finite (their losses are tiny against the inflated variance).
    fields = dict(small_data.fields)
    fields["q"] = fields["q"].copy()
    fields["q"][0] *= 1e100
    poisoned = qgzoo.ReferenceData(fields, small_data.n_test_runs)
    trained = qgzoo.train(experiment("state_mse", steps=8, rollout_steps=3), data=poisoned,
                          progress=False)
    flags = [h["finite"] for h in trained.history]
    assert 0 < trained.skipped < len(flags)
    assert flags.count(False) == trained.skipped
    assert [h["skipped"] for h in trained.history] == list(np.cumsum([not f for f in flags]))
    assert all(np.isfinite(h["loss"]) for h in trained.history if h["finite"])
    assert all(np.isfinite(w).all() for w in weights(trained.parameterization))


def _normalised_forcing_mse(parameterization, small_data, target="q_forcing_total"):
    """Mean over layers of MSE / training variance, on every tenth training sample."""
    train = small_data.split("train")
    q = jnp.asarray(train.fields["q"][:, ::10].reshape(-1, 2, 16, 16))
    truth = train.fields[target][:, ::10].reshape(-1, 2, 16, 16)
    variance = np.mean(train.fields[target] ** 2, axis=(0, 1, 3, 4))
    lores = qg.make_model(qg.PRESETS["eddy"], 16)
    pred = np.asarray(jax.vmap(lambda x: parameterization.q_forcing(
        lores.get_full_state(qg.state_from_q(lores, x)), lores))(q))
    return np.mean(np.mean((pred - truth) ** 2, axis=(0, 2, 3)) / variance)


def test_non_finite_training_data_is_refused(small_data):
    fields = {name: values.copy() for name, values in small_data.fields.items()}
    fields["q"][1, 7, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match=r"'q' has non-finite values in run\(s\) \[1\]"):
        qgzoo.train(experiment(), data=qgzoo.ReferenceData(fields, small_data.n_test_runs),
                    progress=False)


def test_resume_refuses_a_different_experiment(small_data, tmp_path):
    qgzoo.train(experiment(checkpoint_every=2), tmp_path, data=small_data, progress=False,
                stop_after=2)
    with pytest.raises(qgzoo.UserError, match="results of a different experiment"):
        qgzoo.train(experiment(checkpoint_every=2, seed=5), tmp_path, data=small_data,
                    progress=False)


def test_offline_training_lowers_the_forcing_error(small_data):
    spec = experiment(steps=100, batch_size=4)
    untrained = qgzoo.train(experiment(steps=0, batch_size=4), data=small_data, progress=False)
    trained = qgzoo.train(spec, data=small_data, progress=False)
    before = _normalised_forcing_mse(untrained.parameterization, small_data)
    after = _normalised_forcing_mse(trained.parameterization, small_data)
    assert after < 0.8 * before, (before, after)
    assert all(h["rollout_steps"] == 0 for h in trained.history)


def test_online_training_records_its_rollout_length(small_data):
    trained = qgzoo.train(experiment("state_mse", steps=2, rollout_steps=3), data=small_data,
                          progress=False)
    assert [h["rollout_steps"] for h in trained.history] == [3, 3]
    assert all(h["finite"] and h["loss"] > 0 for h in trained.history)


def test_curriculum_grows_the_rollout(small_data):
    spec = experiment("state_mse", steps=6, rollout_steps=4, curriculum_start=1,
                      curriculum_steps=4)
    trained = qgzoo.train(spec, data=small_data, progress=False)
    lengths = [h["rollout_steps"] for h in trained.history]
    # T = 1 + floor(3 step / 4) for step < 4, then 4.
    assert lengths == [1, 1, 2, 3, 4, 4]
    assert lengths == [spec.training.rollout_steps_at(s) for s in range(6)]


def test_checkpointed_rollout_memory_grows_sublinearly():
    lores = qg.make_model(qg.PRESETS["eddy"], 16)
    closure = CNNSpec(channels=(4,), kernel_sizes=(3, 3)).build(
        FieldStats.placeholder(), key=jax.random.key(0))
    params, static = eqx.partition(closure, trainable(closure))
    stepper = AB3Stepper(dt=3600.0)

    def temporaries(n_samples, chunk):
        def gradient(p, q_ref):
            def loss(p):
                model = parameterized_model(lores, eqx.combine(p, static), stepper)
                return rollout_loss(model, q_ref, steps_per_sample=1, chunk=chunk,
                                    state_term=lambda a, b: jnp.mean((a - b) ** 2))
            return jax.grad(loss)(p)
        q_ref = jax.ShapeDtypeStruct((n_samples + 1, 2, 16, 16), jnp.float64)
        compiled = jax.jit(gradient).lower(params, q_ref).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    short, long = temporaries(8, 10), temporaries(80, 10)
    # Ten times the steps, chunks of 10: far less than ten times the temporaries.
    assert long < 3 * short, (short, long)
    # Control: the same 80 steps as one chunk store every step, as a plain scan would.
    assert temporaries(80, 80) > 2 * long


def test_online_training_runs_in_single_precision(small_data):
    """A float32 model with float64 statistics: every loss term is cast to the rollout's dtype."""
    spec = qgzoo.Experiment(
        reference={**SMALL_REFERENCE, "precision": "single"}, network=TINY_CNN,
        loss={"kind": "weighted", "terms": [{"loss": {"kind": "state_mse"}},
                                            {"weight": 0.5, "loss": {"kind": "forcing_mse"}}]},
        training={"steps": 2, "batch_size": 2, "rollout_steps": 2})
    trained = qgzoo.train(spec, data=small_data, progress=False)
    assert all(h["finite"] and h["loss"] > 0 for h in trained.history)


def test_validation_loss_is_scored_on_fixed_validation_windows(small_data):
    data = qgzoo.ReferenceData(small_data.fields, n_test_runs=1, n_val_runs=1)
    spec = qgzoo.Experiment(
        reference={**SMALL_REFERENCE, "n_val_runs": 1}, network=TINY_CNN,
        loss={"kind": "state_mse"},
        training={"steps": 5, "batch_size": 2, "rollout_steps": 2, "eval_every": 2,
                  "eval_windows": 3})
    trained = qgzoo.train(spec, data=data, progress=False)
    assert [h["step"] for h in trained.history if "val_loss" in h] == [1, 3, 4]
    # The last score, recomputed by hand on run 2 (the validation run) with the same windows.
    validation = data.split("validation")
    assert validation.n_runs == 1
    runs, starts = draw_windows(validation, 3, 3, np.random.default_rng([0]))
    q = jnp.asarray(np.stack([small_data.fields["q"][2, s:s + 3] for s in starts]))
    setup = Setup.from_experiment(spec, data.split("train").stats())
    score = StateMSESpec().build(setup.stats, setup.lores).state_term
    model = parameterized_model(setup.lores, trained.parameterization, setup.stepper)
    expected = np.mean([float(rollout_loss(model, w, steps_per_sample=1, chunk=10,
                                           state_term=score)) for w in q])
    np.testing.assert_allclose(trained.history[-1]["val_loss"], expected, rtol=1e-6)

    with pytest.raises(ValidationError, match="n_val_runs"):
        qgzoo.Experiment(reference=SMALL_REFERENCE, training={"eval_every": 2})


def test_fine_tuning_starts_from_the_named_weights(small_data, offline_run, tmp_path):
    offline_run.save(tmp_path / "start")
    # No update: the network is the one it starts from, scales and all.
    kept = qgzoo.train(experiment(steps=0, init_from=str(tmp_path / "start")), data=small_data,
                       progress=False)
    assert same_weights(kept.parameterization, offline_run.parameterization)
    # Three updates from there end elsewhere than three from a fresh network.
    tuned = qgzoo.train(experiment(steps=3, init_from=str(tmp_path / "start")),
                        data=small_data, progress=False)
    fresh = qgzoo.train(experiment(steps=3), data=small_data, progress=False)
    assert tuned.history[0]["loss"] < fresh.history[0]["loss"]
    other = {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]}
    with pytest.raises(qgzoo.UserError, match="init_from: .* has network"):
        qgzoo.train(experiment(init_from=str(tmp_path / "start")).model_copy(
            update={"network": qgzoo.Experiment(network=other).network}), data=small_data,
            progress=False)
    with pytest.raises(qgzoo.UserError, match="neither a zoo entry nor a folder"):
        qgzoo.train(experiment(init_from=str(tmp_path / "nowhere")), data=small_data,
                    progress=False)


def test_train_only_changes_the_named_part_and_names_the_parts_it_does_not_know(
        small_data, offline_run, tmp_path):
    offline_run.save(tmp_path / "start")
    start = offline_run.parameterization
    assert parameter_paths(start) == ["core.convs.0.weight", "core.convs.0.bias",
                                      "core.convs.1.weight", "core.convs.1.bias"]
    tuned = qgzoo.train(experiment(steps=3, init_from=str(tmp_path / "start"),
                                   train_only=["core.convs.1.*"]),
                        data=small_data, progress=False).parameterization
    for name, before, after in zip(parameter_paths(start), *(
            jax.tree.leaves(eqx.filter(p, trainable(p))) for p in (start, tuned))):
        assert np.array_equal(before, after) != name.startswith("core.convs.1."), name
    np.testing.assert_array_equal(tuned.output_scale.std, start.output_scale.std)
    with pytest.raises(qgzoo.UserError, match=r"\['head\.\*'\] match no trainable array; "
                                              r"arrays: core\.convs\.0\.weight"):
        qgzoo.train(experiment(train_only=["head.*"]), data=small_data, progress=False)
