"""The one trainer: offline on the forcing (T = 0) or online through the solver (T > 0).

Each update draws ``batch_size`` windows of T + 1 consecutive training samples
(deterministically from the seed and the update number), scores them with the
loss (vmapped over the batch) and applies the optimizer. An update whose loss
or gradient is not finite is skipped and counted. With an output folder,
checkpoints are written atomically and ``train`` resumes from the last one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from qgzoo.experiment import Experiment
from qgzoo.generate import load_reference
from qgzoo.networks import AbstractParameterization, trainable
from qgzoo.reference import FieldStats, ReferenceData
from qgzoo.rollout import parameterized_model, rollout_loss

CHECKPOINT = "checkpoint.eqx"
LOG = "log.jsonl"


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
    def build(cls, experiment: Experiment, stats: FieldStats) -> "Setup":
        target = experiment.training.forcing_target
        key = jax.random.key(experiment.training.seed)
        lores = experiment.reference.lores_model()
        return cls(
            experiment=experiment,
            stats=stats,
            lores=lores,
            stepper=experiment.stepper.build(),
            parameterization=experiment.network.build(stats, key=key, target=target),
            loss=experiment.loss.build(stats, lores, target),
        )

    def model(self, parameterization: AbstractParameterization):
        """The stepped low-resolution model with ``parameterization``."""
        return parameterized_model(self.lores, parameterization, self.stepper)

    def predict_forcing(self, parameterization, q):
        """Forcing (..., nz, ny, nx) predicted at reference states q (any leading axes)."""
        flat = q.reshape(-1, *q.shape[-3:])
        return jax.vmap(lambda q1: parameterization.q_forcing_at(self.lores, q1))(flat).reshape(
            q.shape)

    def window_loss(self, parameterization, q_window, forcing_window):
        """Loss of one window of T + 1 samples (T = 0: a single sample)."""
        spec = self.experiment.loss
        total = jnp.zeros((), q_window.dtype)
        if spec.needs_rollout():
            total += rollout_loss(
                self.model(parameterization), q_window,
                steps_per_sample=self.experiment.steps_per_sample,
                chunk=self.experiment.training.checkpoint_chunk,
                state_term=self.loss.state_term)
        if spec.needs_forcing():
            predicted = self.predict_forcing(parameterization, q_window)
            total += jnp.mean(jax.vmap(self.loss.forcing_term)(predicted, forcing_window))
        return total

    def batch_loss(self, params, static, q_batch, forcing_batch):
        """Mean window loss of a batch; ``forcing_batch`` is None when the loss needs no forcing."""
        parameterization = eqx.combine(params, static)
        losses = jax.vmap(lambda q, f: self.window_loss(parameterization, q, f))(
            q_batch, forcing_batch)
        return jnp.mean(losses)


def draw_windows(data: ReferenceData, n_windows: int, length: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(run, start) index arrays of ``n_windows`` windows of ``length`` samples."""
    n_runs, n_samples = data.fields["q"].shape[:2]
    if length > n_samples:
        raise ValueError(f"a window of {length} samples does not fit in runs of "
                         f"{n_samples} samples; lower rollout_steps or sample more")
    return rng.integers(n_runs, size=n_windows), rng.integers(n_samples - length + 1, size=n_windows)


@dataclasses.dataclass
class Trained:
    """A trained parameterization and how it was made."""

    experiment: Experiment
    parameterization: AbstractParameterization
    history: list[dict]
    skipped: int = 0

    def parameterized_model(self):
        """A pyqg-jax SteppedModel of the low-resolution model with this parameterization."""
        return parameterized_model(self.experiment.reference.lores_model(),
                                   self.parameterization, self.experiment.stepper.build())

    def save(self, folder: str | pathlib.Path) -> pathlib.Path:
        """Write experiment.json and parameterization.eqx (weights and scales) to ``folder``."""
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(folder / "experiment.json", self.experiment.to_json())
        _atomic_serialise(folder / "parameterization.eqx", self.parameterization)
        return folder


def load(folder: str | pathlib.Path) -> Trained:
    """Load a parameterization saved by ``Trained.save`` (or by ``train``)."""
    folder = pathlib.Path(folder)
    experiment = Experiment.from_file(folder / "experiment.json")
    skeleton = experiment.network.build(
        FieldStats.placeholder(), key=jax.random.key(0),
        target=experiment.training.forcing_target)
    parameterization = eqx.tree_deserialise_leaves(folder / "parameterization.eqx", skeleton)
    history = []
    if (folder / LOG).exists():
        history = [json.loads(line) for line in (folder / LOG).read_text().splitlines()]
    return Trained(experiment, parameterization, history)


def _initial_weights(experiment: Experiment) -> AbstractParameterization:
    """The trained parameterization ``training.init_from`` names (a zoo entry or a folder)."""
    from qgzoo import zoo
    name = experiment.training.init_from
    folder = zoo.folder(name) if name in zoo.names() else pathlib.Path(name)
    if not (folder / "parameterization.eqx").exists():
        raise FileNotFoundError(f"training.init_from: {name!r} is neither a zoo entry nor a "
                                f"folder with a trained parameterization")
    start = load(folder)
    if start.experiment.network != experiment.network:
        raise ValueError(f"training.init_from: {name!r} has network {start.experiment.network}, "
                         f"this experiment {experiment.network}")
    return start.parameterization


def _atomic_write_text(path: pathlib.Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_serialise(path: pathlib.Path, tree):
    tmp = path.with_name(path.name + ".tmp")
    eqx.tree_serialise_leaves(tmp, tree)
    os.replace(tmp, path)


def _batch(experiment: Experiment, data: ReferenceData, runs, starts, length: int, dtype):
    """(q, forcing) windows as arrays; forcing is None when the loss does not use it."""
    q = jnp.asarray(data.windows("q", runs, starts, length), dtype)
    if not experiment.loss.needs_forcing():
        return q, None
    target = experiment.training.forcing_target
    return q, jnp.asarray(data.windows(target, runs, starts, length), dtype)


def _make_update(setup: Setup, optimizer):
    @eqx.filter_jit
    def update(params, static, opt_state, q_batch, forcing_batch):
        loss, grads = jax.value_and_grad(setup.batch_loss)(params, static, q_batch, forcing_batch)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        return (jax.tree.map(keep, new_params, params),
                jax.tree.map(keep, new_opt_state, opt_state), loss, finite)
    return update


def train(experiment: Experiment | dict, out: str | pathlib.Path | None = None, *,
          data: ReferenceData | None = None, progress: bool = True,
          stop_after: int | None = None) -> Trained:
    """Train ``experiment``; with ``out``, log, checkpoint, resume and save there.

    ``data`` overrides the generated reference; ``stop_after`` ends the run after
    that many updates in total (as if interrupted), leaving the checkpoint behind.
    """
    experiment = Experiment.model_validate(experiment)
    cfg = experiment.training
    if data is None:
        data = load_reference(experiment.reference, experiment.coarsener, progress=progress)
    train_data = data.split("train")
    setup = Setup.build(experiment, train_data.stats())
    if cfg.init_from is not None:
        setup = dataclasses.replace(setup, parameterization=_initial_weights(experiment))
    optimizer = experiment.optimizer.build(cfg.steps)
    params, static = eqx.partition(setup.parameterization, trainable(setup.parameterization))
    opt_state = optimizer.init(params)
    step, skipped, history = 0, 0, []

    out = pathlib.Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if (out / CHECKPOINT).exists():
            previous = Experiment.from_file(out / "experiment.json")
            if previous != experiment:
                raise ValueError(f"{out} holds a checkpoint of a different experiment; "
                                 "use another output folder or delete it")
            template = (params, opt_state, jnp.array(0), jnp.array(0))
            params, opt_state, step, skipped = eqx.tree_deserialise_leaves(
                out / CHECKPOINT, template)
            step, skipped = int(step), int(skipped)
        if (out / LOG).exists():
            history = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
            history = [h for h in history if h["step"] < step]
            _atomic_write_text(out / LOG, "".join(json.dumps(h) + "\n" for h in history))
        _atomic_write_text(out / "experiment.json", experiment.to_json())

    update = _make_update(setup, optimizer)
    dtype = setup.lores.filtr.dtype
    if cfg.eval_every:
        # The same validation windows all along, so the scores are comparable.
        validation = data.split("validation")
        if not validation.n_runs:
            raise ValueError("training.eval_every needs data with validation runs")
        val_length = cfg.rollout_steps + 1
        windows = draw_windows(validation, cfg.eval_windows, val_length,
                               np.random.default_rng([cfg.seed]))
        validation_batch = _batch(experiment, validation, *windows, val_length, dtype)
        validation_loss = eqx.filter_jit(setup.batch_loss)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = tqdm(range(step, end), initial=step, total=cfg.steps, desc="train",
               unit="update", disable=not progress)
    log = (out / LOG).open("a") if out is not None else None
    try:
        for step in bar:
            length = cfg.rollout_steps_at(step) + 1
            rng = np.random.default_rng([cfg.seed, step])
            runs, starts = draw_windows(train_data, cfg.batch_size, length, rng)
            q, forcing = _batch(experiment, train_data, runs, starts, length, dtype)
            t0 = time.perf_counter()
            params, opt_state, loss, finite = update(params, static, opt_state, q, forcing)
            loss, finite = float(loss), bool(finite)
            skipped += not finite
            # A non-finite loss is logged as null: log.jsonl stays strict JSON.
            record = dict(step=step, loss=loss if finite else None, finite=finite,
                          rollout_steps=length - 1, skipped=skipped,
                          seconds=round(time.perf_counter() - t0, 4))
            if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == end):
                value = float(validation_loss(params, static, *validation_batch))
                record["val_loss"] = value if np.isfinite(value) else None
            history.append(record)
            postfix = dict(loss=f"{loss:.4g}", T=length - 1, skipped=skipped)
            if record.get("val_loss") is not None:
                postfix["val"] = f"{record['val_loss']:.4g}"
            bar.set_postfix(**postfix)
            if log is not None:
                log.write(json.dumps(record) + "\n")
                log.flush()
                done = step + 1
                if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == end):
                    _atomic_serialise(out / CHECKPOINT,
                                      (params, opt_state, jnp.array(done), jnp.array(skipped)))
    finally:
        bar.close()
        if log is not None:
            log.close()
    trained = Trained(experiment, eqx.combine(params, static), history, skipped)
    if out is not None:
        trained.save(out)
    return trained
