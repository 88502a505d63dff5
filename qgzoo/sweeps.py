"""Sweeps: one base Experiment, axes over its field paths, each trial trained and scored as
a task on Dask.distributed.

A ``Sweep`` names the base experiment (or a zoo entry, or a JSON file, whose
experiment it takes) and, per field path (``training.seed``,
``optimizer.learning_rate``), the values to try: a list, or a range drawn as
a linear or logarithmic grid, or at random. ``Sweep.trials`` validates every
trial's experiment before anything runs. ``sweep`` runs the trials not yet
finished in ``out`` on a Dask cluster (a ``LocalCluster`` on this machine
unless given a scheduler's address): each trains into ``out/trials/NAME`` and
writes ``result.json`` with its scores, or its error. A trial whose worker dies
is run again by Dask on another worker, resuming from its checkpoint.
``SweepResult.summary`` gives the mean and standard deviation of every score
per configuration over the seeds (``training.seed``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import pathlib
import sys
import traceback
from typing import Any, Literal

import jax
import numpy as np
from pydantic import Field, JsonValue, ValidationError, field_validator, model_validator

from qgzoo import zoo
from qgzoo.core import files
from qgzoo.core.errors import UserError
from qgzoo.core.schema import invalid_spec, json_schema, validation_messages
from qgzoo.core.fields import q_forcing_field
from qgzoo.core.spec import FrozenSpec
from qgzoo.data.reference import REFERENCES
from qgzoo.data import store
from qgzoo.data.store import load_reference
from qgzoo.evaluation import metrics
from qgzoo.evaluation.comparison import TRIAL_RESULT, TRIALS, compare
from qgzoo.training import trained
from qgzoo.training.experiment import Experiment
from qgzoo.training.trainer import train

#: The field path whose values are seeds: configurations differ in everything else.
SEED = "training.seed"
SWEEP = "sweep.json"
#: Held-out samples per test run scored offline.
OFFLINE_SAMPLES = 50


class Axis(FrozenSpec):
    """The values of one field: ``values``, or ``n`` of them over [``low``, ``high``]
    (evenly spaced on a ``linear`` or ``log`` scale in a grid sweep, drawn uniformly on
    that scale in a random one)."""

    values: tuple[JsonValue, ...] | None = Field(None, min_length=1)
    low: float | None = None
    high: float | None = None
    n: int | None = Field(None, ge=1, description="values of a range (grid sweeps)")
    scale: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _check(self):
        if (self.values is None) == (self.low is None or self.high is None):
            raise ValueError("give either values, or low and high")
        if self.values is None and self.scale == "log" and not 0 < self.low <= self.high:
            raise ValueError(f"a log range needs 0 < low <= high, got {self.low}, {self.high}")
        if self.values is None and self.low > self.high:
            raise ValueError(f"low ({self.low}) exceeds high ({self.high})")
        return self

    def grid(self) -> list:
        """The values of a grid sweep."""
        if self.values is not None:
            return list(self.values)
        if self.n is None:
            raise ValueError("a range in a grid sweep needs n")
        space = np.geomspace if self.scale == "log" else np.linspace
        return [float(v) for v in space(self.low, self.high, self.n)]

    def draw(self, rng: np.random.Generator):
        """One value of a random sweep."""
        if self.values is not None:
            return self.values[rng.integers(len(self.values))]
        if self.scale == "log":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


@dataclasses.dataclass(frozen=True)
class Trial:
    """One experiment of a sweep: the values it sets, by field path."""

    values: dict[str, Any]
    experiment: Experiment

    @property
    def name(self) -> str:
        """A name from its content: a rerun finds the trial whatever the axes' order."""
        return "trial-" + files.content_hash(self.experiment.model_dump(mode="json"))[:12]

    @property
    def configuration(self) -> dict[str, Any]:
        """Its values but the seed: trials that differ only by seed share it."""
        return {path: value for path, value in self.values.items() if path != SEED}

    @property
    def label(self) -> str:
        """Its configuration in a few words (``learning_rate=0.001``), the name of its group
        in a comparison."""
        return " ".join(f"{path.rsplit('.', 1)[-1]}={value}"
                        for path, value in self.configuration.items())


class Sweep(FrozenSpec):
    """A base experiment and the axes over its fields: a grid, or random draws."""

    base: Experiment = Field(Experiment(), description=(
        "the experiment; or the name of a zoo entry, or an Experiment JSON file, whose "
        "experiment it is"))
    axes: dict[str, Axis | tuple[JsonValue, ...]] = Field(
        default_factory=dict, description="field path (training.seed) -> values or a range")
    mode: Literal["grid", "random"] = "grid"
    n_trials: int | None = Field(None, ge=1, description="trials drawn (random sweeps)")
    seed: int = Field(0, description="seed of the random draws")
    benchmark: str | None = Field(
        None, description="reference preset on which to compare each trial as well")

    @field_validator("base", mode="before")
    @classmethod
    def _named_base(cls, value):
        if not isinstance(value, str):
            return value
        if value in zoo.names():
            return zoo.experiment(value)
        if value.endswith(".json") and pathlib.Path(value).is_file():
            return Experiment.from_file(value)
        raise ValueError(f"{value!r} is neither a zoo entry ({', '.join(zoo.names())}) nor an "
                         f"Experiment JSON file")

    @model_validator(mode="after")
    def _check(self):
        if self.mode == "random" and self.n_trials is None:
            raise ValueError("n_trials: a random sweep needs the number of trials")
        if self.benchmark is not None and self.benchmark not in REFERENCES:
            raise ValueError(f"benchmark: unknown reference {self.benchmark!r}; presets: "
                             f"{sorted(REFERENCES)}")
        self.trials()  # every trial valid before anything runs
        return self

    def axis(self, path: str) -> Axis:
        value = self.axes[path]
        return value if isinstance(value, Axis) else Axis(values=value)

    def trials(self) -> list[Trial]:
        """The trials, each validated: a path or value the base refuses is an error
        naming the path."""
        paths = list(self.axes)
        if self.mode == "grid":
            grids = []
            for path in paths:
                try:
                    grids.append(self.axis(path).grid())
                except ValueError as error:
                    raise ValueError(f"axes.{path}: {error}") from None
            combinations = list(itertools.product(*grids))
        else:
            rng = np.random.default_rng(self.seed)
            combinations = [tuple(self.axis(p).draw(rng) for p in paths)
                            for _ in range(self.n_trials)]
        return [self._trial(dict(zip(paths, values))) for values in combinations]

    def _trial(self, values: dict[str, Any]) -> Trial:
        data = self.base.model_dump(mode="json")
        for path, value in values.items():
            node = data
            for part in path.split(".")[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ValueError(f"axes.{path}: the experiment has no field {part!r} "
                                     f"there; fields: {sorted(node)}")
                node = node[part]
            leaf = path.split(".")[-1]
            if leaf not in node:
                raise ValueError(f"axes.{path}: the experiment has no field {leaf!r} there; "
                                 f"fields: {sorted(node)}")
            node[leaf] = value
        try:
            return Trial(values, Experiment.model_validate(data))
        except ValidationError as error:
            raise ValueError(f"axes: the trial {values} is not a valid experiment: "
                             + "; ".join(validation_messages(error))) from None

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> "Sweep":
        """A sweep from a JSON file; an invalid one is a ``UserError`` naming it."""
        try:
            return cls.model_validate(files.read_json(path, "sweep"))
        except ValidationError as error:
            raise invalid_spec(str(path), error) from None


def sweep_schema() -> dict[str, Any]:
    """JSON Schema of Sweep, with every installed component kind."""
    return json_schema(Sweep)


# --- running ---------------------------------------------------------------------------

def run_trial(experiment: dict, folder: str, benchmark: str | None = None,
              label: str = "") -> dict:
    """Train and score one trial into ``folder``; its record, also in ``folder/result.json``.

    Runs on a Dask worker. A trial that fails is recorded with its error (the
    sweep goes on); one whose worker dies is run again and resumes from its
    checkpoint, if it had one.
    """
    folder = pathlib.Path(folder)
    try:
        spec = Experiment.model_validate(experiment)
        result = train(spec, folder, progress=False)
        record = {"status": "done", "configuration": label,
                  **trial_scores(result, folder, benchmark)}
    except Exception as error:  # a failed trial is a result of the sweep, not its end
        record = {"status": "failed", "configuration": label,
                  "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc()}
    folder.mkdir(parents=True, exist_ok=True)  # a trial may fail before training makes it
    files.atomic_write_text(folder / TRIAL_RESULT, json.dumps(record, indent=2, allow_nan=False))
    return record


def trial_scores(result: trained.Trained, folder: pathlib.Path,
                 benchmark: str | None) -> dict[str, float | None]:
    """Scores of a trained trial: last training and validation losses, offline R^2 and
    correlation of the forcing on the reference's held-out runs, skipped updates and,
    with ``benchmark``, the mean similarity and stable runs there."""
    finite = [h["loss"] for h in result.history if h["loss"] is not None]
    validation = [h["val_loss"] for h in result.history if h.get("val_loss") is not None]
    experiment = result.experiment
    data = load_reference(experiment.reference, experiment.coarsener, progress=False)
    test = data.split("test")
    samples = np.linspace(0, test.n_samples - 1, min(OFFLINE_SAMPLES, test.n_samples)).astype(int)
    q = np.concatenate([np.asarray(test.fields["q"][run, samples]) for run in range(test.n_runs)])
    target = q_forcing_field(experiment.training.forcing_target)
    truth = np.concatenate([np.asarray(test.fields[target][run, samples])
                            for run in range(test.n_runs)])
    lores = experiment.reference.lores_model()
    predict = jax.jit(jax.vmap(lambda q1: result.parameterization.q_forcing_at(lores, q1)))
    offline = metrics.offline_scores(np.asarray(predict(q)), truth)
    scores = {"train_loss": finite[-1] if finite else None,
              "val_loss": validation[-1] if validation else None,
              "r2": float(np.mean(offline["r2_all"])),
              "correlation": float(np.mean(offline["correlation_all"])),
              "skipped": result.skipped}
    if benchmark is not None:
        comparison = compare([str(folder)], (benchmark,), out=None, figures=False,
                             progress=False)
        row = comparison.rows()[0]
        scores |= {"mean_similarity": row["mean"], "stable": row["stable"]}
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in scores.items()}


@dataclasses.dataclass
class SweepResult:
    """The trials of a sweep and their records (``result.json``), in the sweep's order."""

    sweep: Sweep
    trials: list[Trial]
    records: dict[str, dict]

    def rows(self) -> list[dict]:
        """One row per trial: its name, values, status and scores."""
        return [{"trial": t.name, **t.values, **self.records.get(t.name, {"status": "missing"})}
                for t in self.trials]

    def summary(self) -> list[dict]:
        """Per configuration: the seeds it ran, and each score's mean and standard deviation
        (over the finished trials of those seeds; ``ddof=1``, None with one seed)."""
        groups: dict[str, list[Trial]] = {}
        for trial in self.trials:
            groups.setdefault(json.dumps(trial.configuration, sort_keys=True), []).append(trial)
        rows = []
        for members in groups.values():
            done = [t for t in members if self.records.get(t.name, {}).get("status") == "done"]
            row = {**members[0].configuration,
                   "seeds": [t.experiment.training.seed for t in done],
                   "failed": len(members) - len(done)}
            names = [k for k, v in (self.records[done[0].name] if done else {}).items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)]
            for name in names:
                values = [self.records[t.name][name] for t in done]
                values = np.array([v for v in values if v is not None], float)
                row[name] = float(values.mean()) if values.size else None
                row[f"{name}_std"] = float(values.std(ddof=1)) if values.size > 1 else None
            rows.append(row)
        return rows

    def table(self) -> str:
        """The summary as aligned text: ``mean +- std (n)`` per score."""
        lines = []
        for row in self.summary():
            values = ", ".join(f"{k}={v}" for k, v in row.items()
                               if k in self.sweep.axes and k != SEED) or "base"
            scores = "  ".join(
                f"{k} {_number(v)}" + (f" +- {_number(row[f'{k}_std'])}"
                                       if row.get(f"{k}_std") is not None else "")
                for k, v in row.items()
                if k not in self.sweep.axes and not k.endswith("_std")
                and k not in ("seeds", "failed"))
            failed = f", {row['failed']} failed" if row["failed"] else ""
            lines.append(f"{values}: {len(row['seeds'])} seeds {row['seeds']}{failed}  {scores}")
        return "\n".join(lines)


def _number(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def sweep(spec: Sweep | dict | str | pathlib.Path, out: str | pathlib.Path = "runs/sweep", *,
          scheduler: str | None = None, n_workers: int | None = None,
          progress: bool = True) -> SweepResult:
    """Run the trials of ``spec`` not yet done in ``out`` on Dask; their results.

    ``scheduler`` is a Dask scheduler's address (any cluster, e.g. one started by
    dask-jobqueue on Slurm); without one, a ``LocalCluster`` of ``n_workers``
    single-threaded worker processes (default: one per core) runs here. ``out``
    holds ``sweep.json`` and one trained folder per trial; it is locked while
    the sweep runs, and a different sweep is refused.
    """
    if isinstance(spec, (str, pathlib.Path)):
        spec = Sweep.from_file(spec)
    try:
        spec = Sweep.model_validate(spec)
    except ValidationError as error:
        raise invalid_spec("the sweep", error) from None
    out = pathlib.Path(out)
    trials = spec.trials()
    with files.locked(out):
        _claim(out, spec)
        records = {t.name: _record(out / TRIALS / t.name) for t in trials}
        todo = [t for t in trials if (records[t.name] or {}).get("status") != "done"]
        if progress:
            print(f"sweep: {len(trials)} trials, {len(trials) - len(todo)} done before, "
                  f"{len(todo)} to run", file=sys.stderr, flush=True)
        if todo:
            records |= _run_on_dask(todo, out, spec.benchmark, scheduler, n_workers, progress)
    result = SweepResult(spec, trials, {k: v for k, v in records.items() if v is not None})
    files.atomic_write_text(out / "summary.json", json.dumps(
        {"rows": result.rows(), "summary": result.summary()}, indent=2, default=str))
    return result


def _claim(out: pathlib.Path, spec: Sweep) -> None:
    if (out / SWEEP).exists():
        previous = files.read_json(out / SWEEP, "sweep")
        if previous != spec.model_dump(mode="json"):
            raise UserError(f"{out} holds a different sweep; use another output folder")
    out.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(out / SWEEP, json.dumps(spec.model_dump(mode="json"), indent=2))


def _record(folder: pathlib.Path) -> dict | None:
    return files.read_cache(folder / TRIAL_RESULT, lambda path: json.loads(path.read_text()))


def _build_references(todo: list[Trial], scheduler: str, progress: bool) -> None:
    """Build each reference store the trials read and the cache lacks, its runs in groups
    on the cluster's workers (``build_store`` with ``scheduler``), before any trial starts:
    trials then do not build one store side by side. A build that fails is left for its
    trials to meet and record."""
    specs = {}
    for trial in todo:
        full = trial.experiment.reference.with_coarsener(trial.experiment.coarsener)
        specs[store.store_key(full)] = full
    for full in specs.values():
        try:
            store.build_store(full, store.store_path(full), scheduler=scheduler,
                              progress=progress)
        except Exception as error:  # recorded by every trial that needs the store
            if progress:
                print(f"sweep: the reference {store.store_path(full)} could not be built "
                      f"({type(error).__name__}: {error}); its trials will fail",
                      file=sys.stderr, flush=True)


def _run_on_dask(todo: list[Trial], out: pathlib.Path, benchmark: str | None,
                 scheduler: str | None, n_workers: int | None, progress: bool) -> dict:
    # Here, not at the top: distributed takes a second to import, paid only by a sweep.
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1,
                               threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        _build_references(todo, scheduler or cluster.scheduler_address, progress)
        futures = {client.submit(run_trial, t.experiment.model_dump(mode="json"),
                                 str(out / TRIALS / t.name), benchmark, t.label,
                                 key=t.name, pure=False): t for t in todo}
        records = {}
        for done, future in enumerate(as_completed(futures), 1):
            trial = futures[future]
            records[trial.name] = record = future.result()
            if progress:
                what = (record["error"] if record["status"] == "failed" else
                        "  ".join(f"{k} {_number(v)}" for k, v in record.items()
                                  if isinstance(v, (int, float)) and not isinstance(v, bool)))
                print(f"sweep: {done}/{len(todo)} {trial.name} {trial.values} "
                      f"{record['status']}: {what}", file=sys.stderr, flush=True)
        return records
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
