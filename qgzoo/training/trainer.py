"""The one trainer: offline on the forcing (T = 0) or online through the solver (T > 0);
a linear closure's least squares and a few constants' ensemble Kalman inversion
(``calibration``) are its other methods.

Each update draws ``batch_size`` windows of T + 1 consecutive training samples
(deterministically from the seed and the update number), scores them with the
loss (vmapped over the batch) and applies the optimizer. An update whose loss,
gradient or new parameters are not finite is skipped and counted. With an
output folder (claimed by the experiment and locked while training),
checkpoints are written atomically and ``train`` resumes from the last one.
The batch is split over the devices of every process (``devices.batch_mesh``)
and the gradients averaged across them; the main process alone writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from qgzoo.components.networks import AbstractParameterization, LinearClosure, Scale, trainable
from qgzoo.core import devices, files
from qgzoo.core.errors import UserError
from qgzoo.core.fields import FieldStats, q_forcing_field
from qgzoo.data.reference import ReferenceData
from qgzoo.data.store import load_reference
from qgzoo.physics import qg
from qgzoo.simulate.rollout import parameterized_model, rollout_loss
from qgzoo.training import calibration
from qgzoo.training.experiment import Experiment, TrainingSpec
from qgzoo.training.trained import (
    CHECKPOINT, EXPERIMENT, LOG, Trained, claim, clear, initial_weights, read_log)


@dataclasses.dataclass(frozen=True)
class Setup:
    """The built components of an experiment, fitted to its training data."""

    experiment: Experiment
    stats: FieldStats
    lores: object
    stepper: object
    parameterization: AbstractParameterization
    loss: object

    @classmethod
    def from_experiment(cls, experiment: Experiment, stats: FieldStats) -> "Setup":
        """Build the experiment's components; the network starts from ``training.init_from``
        if set, else from weights drawn with ``training.seed``."""
        target = experiment.training.forcing_target
        lores = experiment.reference.lores_model()
        key = jax.random.key(experiment.training.seed)
        if experiment.training.init_from is None:
            parameterization = experiment.network.build(stats, key=key, target=target)
        else:
            parameterization = initial_weights(experiment, stats, key=key)
        return cls(
            experiment=experiment,
            stats=stats,
            lores=lores,
            stepper=experiment.stepper.build(),
            parameterization=parameterization,
            loss=experiment.loss.build(stats, lores, q_forcing_field(target)),
        )

    def model(self, parameterization: AbstractParameterization):
        """The stepped low-resolution model with ``parameterization``."""
        return parameterized_model(self.lores, parameterization, self.stepper)

    def predict_forcing(self, parameterization, q):
        """Forcing (..., nz, ny, nx) predicted at reference states q (any leading axes)."""
        flat = q.reshape(-1, *q.shape[-3:])
        return jax.vmap(lambda q1: parameterization.q_forcing_at(self.lores, q1))(flat).reshape(
            q.shape)

    def perturbed(self, q_window, key):
        """The window with Gaussian noise of std ``training.start_noise`` times each
        layer's rms of q added to its first state (noise injection)."""
        noise = self.experiment.training.start_noise
        if not noise:
            return q_window
        std = self.stats.std["q"].astype(q_window.dtype)[:, None, None]
        return q_window.at[0].add(
            noise * std * jax.random.normal(key, q_window.shape[1:], q_window.dtype))

    def window_loss(self, parameterization, q_window, forcing_window, key):
        """Loss of one window of T + 1 samples (T = 0: a single sample); ``key`` (a raw
        PRNG key) seeds its rollouts' noise, one member's or ``training.members``'."""
        spec, training = self.experiment.loss, self.experiment.training
        total = jnp.zeros((), q_window.dtype)
        if spec.needs_rollout():
            ensemble = training.members > 1
            noise_key, key = jax.random.split(key)
            total += rollout_loss(
                self.model(parameterization), self.perturbed(q_window, noise_key),
                steps_per_sample=self.experiment.steps_per_sample,
                chunk=training.checkpoint_chunk,
                state_term=self.loss.ensemble_term if ensemble else self.loss.state_term,
                time_decay=training.time_decay, truncate_every=training.truncate_every,
                unscored=training.unscored_samples,
                keys=jax.random.split(key, training.members) if ensemble else key,
                window_term=self.loss.window_term if spec.pools_window() else None)
        if spec.needs_forcing():
            predicted = self.predict_forcing(parameterization, q_window)
            total += jnp.mean(jax.vmap(self.loss.forcing_term)(predicted, forcing_window))
        return total

    def batch_loss(self, params, static, q_batch, forcing_batch, keys):
        """Mean window loss of a batch; ``forcing_batch`` is None when the loss needs no
        forcing; ``keys`` (batch, 2) are the windows' raw PRNG keys."""
        parameterization = eqx.combine(params, static)
        losses = jax.vmap(lambda q, f, k: self.window_loss(parameterization, q, f, k))(
            q_batch, forcing_batch, keys)
        return jnp.mean(losses)


def parameter_paths(parameterization) -> list[str]:
    """The dotted paths of the trainable arrays of ``parameterization``, e.g.
    ``core.convs.2.weight``: the names ``training.train_only`` matches."""
    leaves = jax.tree_util.tree_flatten_with_path(
        eqx.filter(parameterization, trainable(parameterization)))[0]
    return [_dotted(path) for path, _ in leaves]


def _dotted(path) -> str:
    parts = []
    for key in path:
        for attribute in ("name", "idx", "key"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
    return ".".join(parts)


def trained_part(parameterization, patterns: tuple[str, ...] | None):
    """Filter spec of the arrays training changes: the trainable ones (``trainable``)
    whose path (``parameter_paths``) matches one of ``patterns`` (globs; None: all).
    A pattern that matches no array is a ``UserError`` listing the paths."""
    spec = trainable(parameterization)
    if patterns is None:
        return spec
    paths = parameter_paths(parameterization)
    unmatched = [p for p in patterns if not fnmatch.filter(paths, p)]
    if unmatched:
        raise UserError(f"training.train_only: {unmatched} match no trainable array; "
                        f"arrays: {', '.join(paths)}")
    flat, treedef = jax.tree_util.tree_flatten_with_path(spec)
    return jax.tree_util.tree_unflatten(treedef, [
        bool(keep) and any(fnmatch.fnmatchcase(_dotted(path), p) for p in patterns)
        for path, keep in flat])


def draw_windows(data: ReferenceData, n_windows: int, length: int,
                 rng) -> tuple[np.ndarray, np.ndarray]:
    """(run, start) index arrays of ``n_windows`` windows of ``length`` samples."""
    n_runs, n_samples = data.fields["q"].shape[:2]
    if length > n_samples:
        raise UserError(f"a window of {length} samples does not fit in runs of "
                        f"{n_samples} samples; lower rollout_steps or sample more")
    return rng.integers(n_runs, size=n_windows), rng.integers(n_samples - length + 1, size=n_windows)


def draw_keys(n_windows: int, rng) -> np.ndarray:
    """(n_windows, 2) raw PRNG keys (uint32) of the windows' noise."""
    return rng.integers(0, 2**32, size=(n_windows, 2), dtype=np.uint32)


def read_batch(data: ReferenceData, runs, starts, length: int, dtype,
               forcing: str | None) -> tuple[jax.Array, jax.Array | None]:
    """(q, forcing) windows as arrays; ``forcing`` names the target field, None for none."""
    q = jnp.asarray(data.windows("q", runs, starts, length), dtype)
    if forcing is None:
        return q, None
    return q, jnp.asarray(data.windows(forcing, runs, starts, length), dtype)


def batch_value_and_grad(setup: Setup, mesh):
    """``(params, static, q, forcing, keys) -> (loss, grads)`` of the batch loss; with a
    ``mesh``, each device takes its share of the windows and the losses and gradients are
    averaged across the devices (of every process)."""
    value_and_grad = jax.value_and_grad(setup.batch_loss)
    if mesh is None:
        return value_and_grad
    split, whole = jax.sharding.PartitionSpec(devices.AXIS), jax.sharding.PartitionSpec()

    def on_device(arrays, q_batch, forcing_batch, keys, rest):
        loss, grads = value_and_grad(*eqx.combine(arrays, rest), q_batch, forcing_batch, keys)
        return jax.lax.pmean((loss, grads), devices.AXIS)

    def shared(params, static, q_batch, forcing_batch, keys):
        arrays, rest = eqx.partition((params, static), eqx.is_array)
        return jax.shard_map(lambda a, q, f, k: on_device(a, q, f, k, rest), mesh=mesh,
                             in_specs=(whole, split, split, split), out_specs=whole,
                             check_vma=False)(arrays, q_batch, forcing_batch, keys)
    return shared


def make_update(setup: Setup, optimizer: optax.GradientTransformation, mesh=None):
    """One jitted optimizer update: ``(params, static, opt_state, q, forcing, keys)`` ->
    ``(params, opt_state, loss, finite)``; an update with a non-finite loss, gradient or
    result (an overflow of the weights) changes nothing. With a ``mesh`` (``devices.
    batch_mesh``), the batch is split over its devices (``batch_value_and_grad``)."""
    value_and_grad = batch_value_and_grad(setup, mesh)

    @eqx.filter_jit
    def update(params, static, opt_state, q_batch, forcing_batch, keys):
        loss, grads = value_and_grad(params, static, q_batch, forcing_batch, keys)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((grads, new_params))]))
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        return (jax.tree.map(keep, new_params, params),
                jax.tree.map(keep, new_opt_state, opt_state), loss, finite)
    return update


def resume(out: pathlib.Path, experiment: Experiment, params, opt_state, *,
           write: bool = True):
    """Prepare ``out`` (claimed by ``experiment``): restore its checkpoint and log, if any.

    Returns ``(params, opt_state, step, skipped, history)``: as saved after the
    last checkpointed update, or as given (step 0) without a checkpoint. Log
    records after the checkpoint are dropped; experiment.json is (re)written
    (unless not ``write``: only read).
    """
    if write:
        out.mkdir(parents=True, exist_ok=True)
    step, skipped = 0, 0
    if (out / CHECKPOINT).exists():
        template = (params, opt_state, jnp.array(0), jnp.array(0))
        params, opt_state, step, skipped = files.read_tree(out / CHECKPOINT, template)
        step, skipped = int(step), int(skipped)
    history = [h for h in read_log(out) if h["step"] < step]
    if not write:
        return params, opt_state, step, skipped, history
    if (out / LOG).exists():
        files.atomic_write_text(out / LOG, "".join(json.dumps(h) + "\n" for h in history))
    files.atomic_write_text(out / EXPERIMENT, experiment.to_json())
    return params, opt_state, step, skipped, history


def validation_batch(data: ReferenceData, n_windows: int, length: int, seed: int, dtype,
                     forcing: str | None):
    """The fixed windows of the validation runs the validation loss scores, all along."""
    validation = data.split("validation")
    if not validation.n_runs:
        raise UserError("training.eval_every needs data with validation runs")
    rng = np.random.default_rng([seed])
    windows = draw_windows(validation, n_windows, length, rng)
    return (*read_batch(validation, *windows, length, dtype, forcing),
            jnp.asarray(draw_keys(n_windows, rng)))


def train(experiment: Experiment | dict, out: str | pathlib.Path | None = None, *,
          data: ReferenceData | None = None, progress: bool = True,
          stop_after: int | None = None, overwrite: bool = False) -> Trained:
    """Train ``experiment``; with ``out``, log, checkpoint, resume and save there.

    ``out`` holding another experiment's results is refused unless ``overwrite``
    (which deletes them first), and is locked while training. ``data`` overrides
    the generated reference; ``stop_after`` ends the run after that many updates
    in total (as if interrupted), leaving the checkpoint behind.
    """
    experiment = Experiment.model_validate(experiment)
    if out is None:
        return _train(experiment, None, data, progress, stop_after)
    out = pathlib.Path(out)
    with contextlib.ExitStack() as stack:
        # In a job of several processes, the main one holds the folder and writes in it.
        if devices.is_main():
            stack.enter_context(files.locked(out))
            claim(out, experiment, overwrite=overwrite)
            if overwrite and out.is_dir():
                clear(out)
        devices.barrier(f"training folder {out} claimed")
        return _train(experiment, out, data, progress, stop_after)


def _train(experiment: Experiment, out: pathlib.Path | None, data: ReferenceData | None,
           progress: bool, stop_after: int | None) -> Trained:
    cfg = experiment.training
    progress = progress and devices.is_main()
    writes = out is not None and devices.is_main()
    if data is None:
        data = load_reference(experiment.reference, experiment.coarsener, progress=progress)
    train_data = data.split("train")
    setup = Setup.from_experiment(experiment, train_data.stats())
    if cfg.method == "least_squares":
        fitted, record = fit_least_squares(setup, train_data, progress=progress)
        trained = Trained(experiment, fitted, [record], 0)
        if writes:
            files.atomic_write_text(out / LOG, json.dumps(record) + "\n")
            trained.save(out)
        return trained
    if cfg.method == "eki":
        return _calibrate(setup, train_data, out if writes else None, progress, stop_after)
    optimizer = experiment.optimizer.transformation(cfg.steps)
    params, static = eqx.partition(setup.parameterization,
                                   trained_part(setup.parameterization, cfg.train_only))
    opt_state = optimizer.init(params)
    step, skipped, history = 0, 0, []
    if out is not None:
        params, opt_state, step, skipped, history = resume(out, experiment, params, opt_state,
                                                           write=writes)
    mesh = devices.batch_mesh(cfg.batch_size)
    params, static, opt_state = devices.replicated((params, static, opt_state), mesh)
    dtype = setup.lores.filtr.dtype
    forcing = q_forcing_field(cfg.forcing_target) if experiment.loss.needs_forcing() else None
    validation = None
    if cfg.eval_every:
        validation = devices.replicated(validation_batch(
            data, cfg.eval_windows, cfg.rollout_steps + 1, cfg.seed, dtype, forcing), mesh)
    loop = _Loop(cfg, make_update(setup, optimizer, mesh), eqx.filter_jit(setup.batch_loss),
                 train_data, dtype=dtype, forcing=forcing, validation=validation,
                 out=out if writes else None, skipped=skipped, mesh=mesh)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    params, opt_state = loop.run(params, static, opt_state, step, end, history, progress)
    trained = Trained(experiment, eqx.combine(params, static), history, loop.skipped)
    if writes:
        trained.save(out)
    return trained


def _calibrate(setup: Setup, data: ReferenceData, out: pathlib.Path | None, progress: bool,
               stop_after: int | None) -> Trained:
    """``training.method = "eki"``: the iterations of ``calibration.Inversion``, one log
    record each, checkpointed like updates (the ensemble and the iteration)."""
    experiment, cfg = setup.experiment, setup.experiment.training
    inversion = calibration.Inversion(setup, data)
    u, step, history = inversion.initial_ensemble(), 0, []
    if out is not None:
        u, _, step, _, history = resume(out, experiment, jnp.asarray(u), (), write=True)
        u = np.asarray(u)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = tqdm(range(step, end), initial=step, total=cfg.steps, desc="eki", unit="iteration",
               disable=not progress)
    for step in bar:
        u, record = inversion.iterate(u, step, progress=progress)
        history.append(record)
        bar.set_postfix(misfit=f"{record['loss']:.4g}", blown_up=record["blown_up"])
        if out is not None:
            with (out / LOG).open("a") as log:
                log.write(json.dumps(record) + "\n")
            every = cfg.checkpoint_every
            if every and ((step + 1) % every == 0 or step + 1 == end):
                files.write_tree(out / CHECKPOINT, (jnp.asarray(u), (), jnp.array(step + 1),
                                                    jnp.array(0)))
    bar.close()
    trained = Trained(experiment, inversion.closure(u.mean(axis=0)), history)
    if out is not None:
        trained.save(out)
    return trained


def fit_least_squares(setup: Setup, data: ReferenceData, *, batch: int = 32,
                      progress: bool = True) -> tuple[LinearClosure, dict]:
    """The setup's linear closure with its weights solved in closed form, and a log record.

    Per layer z, over every grid point of every sample of ``data``: the feature
    scales are the rms of each feature, and the dimensionless weights minimise
    ``mean((S - target)^2) / std(target)^2 + ridge * |w|^2`` (the normal
    equations, accumulated sample batch by batch in float64). The record's
    ``loss`` is that normalised mean squared error, averaged over layers, and
    ``r2`` per layer is 1 - MSE / mean(target^2).
    """
    closure = setup.parameterization
    if not isinstance(closure, LinearClosure):
        raise UserError(f"training.method least_squares needs a linear closure (network "
                        f"kind symbolic), not {type(closure).__name__}")
    target = q_forcing_field(setup.experiment.training.forcing_target)

    @jax.jit
    def sums(q, y):
        features = jax.vmap(lambda x: closure.features(
            setup.lores.get_full_state(qg.state_from_q(setup.lores, x)), setup.lores))(q)
        gram = jnp.einsum("bjzyx,bkzyx->zjk", features, features)
        return gram, jnp.einsum("bjzyx,bzyx->zj", features, y), jnp.einsum("bzyx->z", y**2)

    start = time.perf_counter()
    totals, count = None, 0
    chunks = [(run, first) for run in range(data.n_runs) for first in range(0, data.n_samples, batch)]
    for run, first in tqdm(chunks, desc="least squares", unit="batch", disable=not progress):
        stop = min(first + batch, data.n_samples)
        q, y = (jnp.asarray(np.asarray(data.fields[name][run, first:stop]), jnp.float64)
                for name in ("q", target))
        part = sums(q, y)
        totals = part if totals is None else jax.tree.map(jnp.add, totals, part)
        count += (stop - first) * q.shape[-2] * q.shape[-1]
    gram, rhs, squares = (np.asarray(x) / count for x in totals)
    feature_std = np.sqrt(np.einsum("zjj->zj", gram))
    target_std = np.asarray(closure.output_scale.std, np.float64)
    if not np.all(feature_std > 0):
        raise UserError(f"least squares: a feature is zero on all the training data "
                        f"(rms per layer and feature: {feature_std.tolist()})")
    gram_s = gram / (feature_std[:, :, None] * feature_std[:, None, :])
    rhs_s = rhs / (feature_std * target_std[:, None])
    ridge = setup.experiment.training.ridge
    weights = np.stack([np.linalg.solve(g + ridge * np.eye(len(g)), h)
                        for g, h in zip(gram_s, rhs_s)])
    mse = (squares / target_std**2 - 2 * np.einsum("zj,zj->z", weights, rhs_s)
           + np.einsum("zj,zjk,zk->z", weights, gram_s, weights))
    fitted = eqx.tree_at(lambda c: (c.weights, c.feature_scale), closure,
                         (jnp.asarray(weights), Scale(jnp.asarray(feature_std))))
    record = dict(step=0, loss=float(np.mean(mse)), finite=bool(np.all(np.isfinite(weights))),
                  rollout_steps=0, skipped=0, seconds=round(time.perf_counter() - start, 4),
                  r2=(1 - mse * target_std**2 / squares).tolist(), points=count)
    return fitted, record


class _Loop:
    """The updates of one training, from a given step: batches, log, progress, checkpoints."""

    def __init__(self, training: TrainingSpec, update, validation_loss, data: ReferenceData, *,
                 dtype, forcing: str | None, validation, out: pathlib.Path | None, skipped: int,
                 mesh=None):
        self.cfg, self.update, self.validation_loss = training, update, validation_loss
        self.data = data
        self.dtype, self.forcing, self.validation = dtype, forcing, validation
        self.out, self.skipped, self.mesh = out, skipped, mesh

    def run(self, params, static, opt_state, start: int, end: int, history: list,
            progress: bool):
        """Updates ``start`` to ``end`` - 1; appends their records to ``history``."""
        bar = tqdm(range(start, end), initial=start, total=self.cfg.steps, desc="train",
                   unit="update", disable=not progress)
        log = (self.out / LOG).open("a") if self.out is not None else None
        try:
            for step in bar:
                params, opt_state, record = self.one_update(params, static, opt_state, step, end)
                history.append(record)
                bar.set_postfix(**_postfix(record))
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    self.checkpoint(params, opt_state, step + 1, end)
        finally:
            bar.close()
            if log is not None:
                log.close()
        return params, opt_state

    def one_update(self, params, static, opt_state, step: int, end: int):
        """Update ``step`` on its batch, drawn from the seed and the step: new state, record."""
        length = self.cfg.rollout_steps_at(step) + 1
        rng = np.random.default_rng([self.cfg.seed, step])
        runs, starts = draw_windows(self.data, self.cfg.batch_size, length, rng)
        keys = draw_keys(self.cfg.batch_size, rng)
        # Every process draws the whole batch and reads its own windows of it.
        rows = devices.local_rows(self.mesh, self.cfg.batch_size)
        q, forcing, keys = (
            devices.global_batch(self.mesh, x, self.cfg.batch_size) for x in (*read_batch(
                self.data, runs[rows], starts[rows], length, self.dtype, self.forcing),
                jnp.asarray(keys[rows])))
        t0 = time.perf_counter()
        params, opt_state, loss, finite = self.update(params, static, opt_state, q, forcing,
                                                      keys)
        loss, finite = float(loss), bool(finite)
        self.skipped += not finite
        # A non-finite loss is logged as null: log.jsonl stays strict JSON.
        record = dict(step=step, loss=loss if finite else None, finite=finite,
                      rollout_steps=length - 1, skipped=self.skipped,
                      seconds=round(time.perf_counter() - t0, 4))
        every = self.cfg.eval_every
        if every and ((step + 1) % every == 0 or step + 1 == end):
            value = float(self.validation_loss(params, static, *self.validation))
            record["val_loss"] = value if np.isfinite(value) else None
        return params, opt_state, record

    def checkpoint(self, params, opt_state, done: int, end: int):
        """Save the state after ``done`` updates, every ``checkpoint_every`` and at the end."""
        every = self.cfg.checkpoint_every
        if every and (done % every == 0 or done == end):
            state = (params, opt_state, jnp.array(done), jnp.array(self.skipped))
            files.write_tree(self.out / CHECKPOINT, state)


def _postfix(record: dict) -> dict:
    postfix = dict(loss=f"{record['loss']:.4g}" if record["loss"] is not None else "nan",
                   T=record["rollout_steps"], skipped=record["skipped"])
    if record.get("val_loss") is not None:
        postfix["val"] = f"{record['val_loss']:.4g}"
    return postfix
