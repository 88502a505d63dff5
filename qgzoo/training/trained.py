"""The trained folder: what ``qgzoo.train`` writes and ``qgzoo.load`` reads.

A folder holds ``experiment.json`` (the spec), ``parameterization.eqx``
(weights and fitted scales; absent for a closure used with the constants of
its spec), ``log.jsonl`` (one JSON record per update) and, while a training
runs, ``checkpoint.eqx``. A zoo entry is such a folder in ``registry/``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import equinox as eqx
import jax

from qgzoo.components.networks import AbstractParameterization, Scale
from qgzoo.core import files
from qgzoo.core.fields import FieldStats
from qgzoo.simulate.rollout import parameterized_model
from qgzoo.training.experiment import Experiment

EXPERIMENT = "experiment.json"
WEIGHTS = "parameterization.eqx"
LOG = "log.jsonl"
CHECKPOINT = "checkpoint.eqx"


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
        files.atomic_write_text(folder / EXPERIMENT, self.experiment.to_json())
        files.atomic_write(folder / WEIGHTS,
                           lambda tmp: eqx.tree_serialise_leaves(tmp, self.parameterization))
        return folder


def read_log(folder: str | pathlib.Path) -> list[dict]:
    """The records of ``folder``'s log.jsonl, oldest first ([] if there is none)."""
    path = pathlib.Path(folder) / LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def holds_experiment(folder: pathlib.Path) -> bool:
    """Whether ``folder`` is a trained folder (or a zoo entry): it has an experiment.json."""
    return (folder / EXPERIMENT).is_file()


def skeleton(experiment: Experiment, seed: int = 0) -> AbstractParameterization:
    """The experiment's network built on placeholder stats, weights drawn from ``seed``:
    the tree that saved weights load into, or a closure with its spec's constants."""
    return experiment.network.build(FieldStats.placeholder(), key=jax.random.key(seed),
                                    target=experiment.training.forcing_target)


def load(folder: str | pathlib.Path) -> Trained:
    """Load a parameterization saved by ``Trained.save`` (or by ``train``)."""
    folder = pathlib.Path(folder)
    experiment = Experiment.from_file(folder / EXPERIMENT)
    parameterization = eqx.tree_deserialise_leaves(folder / WEIGHTS, skeleton(experiment))
    return Trained(experiment, parameterization, read_log(folder))


def untrained(experiment: Experiment, name: str) -> AbstractParameterization:
    """The network of ``experiment`` with the constants of its spec (a physical closure, none).

    A network whose scales are fitted to data cannot be used untrained: ValueError.
    """
    parameterization = skeleton(experiment, experiment.training.seed)
    fitted = any(isinstance(leaf, Scale) for leaf in
                 jax.tree.leaves(parameterization, is_leaf=lambda x: isinstance(x, Scale)))
    if fitted:
        raise ValueError(f"{name}: network {experiment.network.kind!r} is fitted to data; "
                         f"train it first (`qgzoo train`) and compare the trained folder")
    return parameterization


def load_parameterization(folder: str | pathlib.Path,
                          name: str | None = None) -> AbstractParameterization:
    """The parameterization of a trained folder, or of one holding only experiment.json
    (``untrained``; ``name`` for its errors, default the folder's)."""
    folder = pathlib.Path(folder)
    if not holds_experiment(folder):
        raise FileNotFoundError(f"{folder} has no {EXPERIMENT}")
    if (folder / WEIGHTS).exists():
        return load(folder).parameterization
    return untrained(Experiment.from_file(folder / EXPERIMENT), name or folder.name)


def find(name: str) -> pathlib.Path:
    """The folder ``name`` stands for: a zoo entry's (``registry/NAME``), else the path itself."""
    entry = files.registry_dir() / name
    return entry if holds_experiment(entry) else pathlib.Path(name)


def initial_weights(experiment: Experiment) -> AbstractParameterization:
    """The trained parameterization ``training.init_from`` names (a zoo entry or a folder)."""
    name = experiment.training.init_from
    folder = find(name)
    if not (folder / WEIGHTS).exists():
        raise FileNotFoundError(f"training.init_from: {name!r} is neither a zoo entry nor a "
                                f"folder with a trained parameterization")
    start = load(folder)
    if start.experiment.network != experiment.network:
        raise ValueError(f"training.init_from: {name!r} has network {start.experiment.network}, "
                         f"this experiment {experiment.network}")
    return start.parameterization
