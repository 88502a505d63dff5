"""The trained folder: what ``qgzoo.train`` writes and ``qgzoo.load`` reads.

A folder holds ``experiment.json`` (the spec), ``parameterization.eqx``
(weights and fitted scales; absent for a closure used with the constants of
its spec), ``log.jsonl`` (one JSON record per update) and, while a training
runs, ``checkpoint.eqx``. The weights and the checkpoint have their SHA-256
beside them (``NAME.sha256``). A zoo entry is such a folder in ``registry/``.

A folder belongs to the experiment in its experiment.json: ``claim`` refuses
to train another one into it unless told to overwrite.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any

import equinox as eqx
import jax
from pydantic import ValidationError

from qgzoo.components.networks import AbstractParameterization, Scale, StochasticSpec
from qgzoo.core import files
from qgzoo.core.errors import UserError
from qgzoo.core.fields import FieldStats
from qgzoo.core.schema import Component, invalid_spec
from qgzoo.core.spec import FrozenSpec, NetworkSpec
from qgzoo.simulate.rollout import parameterized_model
from qgzoo.training.experiment import Experiment, TrainingSpec

EXPERIMENT = "experiment.json"
WEIGHTS = "parameterization.eqx"
LOG = "log.jsonl"
CHECKPOINT = "checkpoint.eqx"
#: What a zoo entry's name may be: one path component, never ``..``.
ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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
        files.write_tree(folder / WEIGHTS, self.parameterization)
        return folder


def read_log(folder: str | pathlib.Path) -> list[dict]:
    """The records of ``folder``'s log.jsonl, oldest first ([] if there is none).

    A torn last line (a process killed while writing it) is dropped; a bad line
    elsewhere is a ``UserError`` naming the file and line.
    """
    path = pathlib.Path(folder) / LOG
    if not path.exists():
        return []
    lines = files.read_text(path, "training log").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise UserError(f"{path}, line {number}, is not a JSON record; fix or delete "
                                f"the line") from None
    return records


def holds_experiment(folder: pathlib.Path) -> bool:
    """Whether ``folder`` is a trained folder (or a zoo entry): it has an experiment.json."""
    return (folder / EXPERIMENT).is_file()


def skeleton(network: NetworkSpec, target: str, seed: int = 0) -> AbstractParameterization:
    """``network`` built on placeholder stats for ``target``, weights drawn from ``seed``:
    the tree that saved weights load into, or a closure with its spec's constants."""
    return network.build(FieldStats.placeholder(), key=jax.random.key(seed), target=target)


def load(folder: str | pathlib.Path) -> Trained:
    """Load a parameterization saved by ``Trained.save`` (or by ``train``)."""
    folder = pathlib.Path(folder)
    experiment = Experiment.from_file(folder / EXPERIMENT)
    parameterization = files.read_tree(folder / WEIGHTS, skeleton(experiment.network,
                                                             experiment.training.forcing_target))
    return Trained(experiment, parameterization, read_log(folder))


def claim(folder: pathlib.Path, experiment: Experiment, *, overwrite: bool = False) -> None:
    """Make sure ``folder`` may hold the results of ``experiment``; touches nothing.

    A folder holding another experiment's results, or files but no experiment,
    is refused (``UserError``) unless ``overwrite``; then ``clear`` empties it.
    """
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} is a file, not a folder; choose another output folder")
    if overwrite or not folder.exists():
        return
    if holds_experiment(folder):
        previous = files.read_json(folder / EXPERIMENT, "experiment")
        try:  # equal as specs, whatever defaults an older file leaves out
            same = Experiment.model_validate(previous) == experiment
        except ValidationError:
            same = False
        if not same:
            changes = _differences(previous, experiment.model_dump(mode="json"))
            raise UserError(f"{folder} holds the results of a different experiment "
                            f"({'; '.join(changes[:3]) or 'its spec is not valid here'}); "
                            f"use another output folder, or --overwrite (overwrite=True) "
                            f"to replace them")
    elif any(folder.iterdir()):
        raise UserError(f"{folder} is not empty and is not a trained folder (no {EXPERIMENT}); "
                        f"use another output folder, or --overwrite (overwrite=True) to train "
                        f"into it")


def clear(folder: pathlib.Path) -> None:
    """Delete the results a training writes in ``folder`` (and nothing else); its
    experiment.json is replaced when the new training starts."""
    for name in (WEIGHTS, LOG, CHECKPOINT):
        files.remove(folder / name)


def _differences(old, new, path: str = "") -> list[str]:
    """``field.path: old -> new`` for each leaf where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [change for key in sorted(set(old) | set(new))
                for change in _differences(old.get(key), new.get(key), f"{path}{key}.")]
    return [] if old == new else [f"{path.rstrip('.')}: {json.dumps(old)} -> {json.dumps(new)}"]


class Runnable(FrozenSpec):
    """The part of an experiment that running its parameterization needs: the network,
    the stepper and the training's forcing target and seed. The other parts are
    read but not validated, so that a folder whose loss or coarsener kind is not
    installed here still runs; an unknown field is still an error."""

    network: Component("network")
    stepper: Component("stepper") = Experiment.model_fields["stepper"].default
    training: TrainingSpec = TrainingSpec()
    reference: Any = None
    coarsener: Any = None
    loss: Any = None
    optimizer: Any = None

    model_config = FrozenSpec.model_config | {"validate_default": True}

    @classmethod
    def from_spec(cls, spec: Experiment | dict, subject: str) -> "Runnable":
        """From an Experiment or its JSON (a dict); an invalid part is a ``UserError``
        naming ``subject`` (a file, an entry) and the field."""
        if isinstance(spec, Experiment):
            return cls(network=spec.network, stepper=spec.stepper, training=spec.training)
        if not isinstance(spec, dict):
            raise UserError(f"{subject} is not an experiment (a JSON object)")
        try:
            return cls.model_validate(spec)
        except ValidationError as error:
            raise invalid_spec(subject, error) from None

    @classmethod
    def from_folder(cls, folder: pathlib.Path) -> "Runnable":
        """Read ``folder``'s experiment.json (``from_spec``)."""
        path = folder / EXPERIMENT
        return cls.from_spec(files.read_json(path, "experiment"), str(path))

    @property
    def target(self) -> str:
        return self.training.forcing_target

    def untrained(self, name: str) -> AbstractParameterization:
        """The network with the constants of its spec (a physical closure, none).

        A network whose scales are fitted to data cannot be used untrained: UserError.
        """
        parameterization = skeleton(self.network, self.target, self.training.seed)
        fitted = any(isinstance(leaf, Scale) for leaf in
                     jax.tree.leaves(parameterization, is_leaf=lambda x: isinstance(x, Scale)))
        if fitted:
            raise UserError(f"{name}: network {self.network.kind!r} is fitted to data; "
                            f"train it first (`qgzoo train`) and compare the trained folder")
        return parameterization


def load_parameterization(folder: str | pathlib.Path,
                          name: str | None = None) -> AbstractParameterization:
    """The parameterization of a trained folder, or of one holding only experiment.json
    (``Runnable.untrained``; ``name`` for its errors, default the folder's)."""
    folder = pathlib.Path(folder)
    if not holds_experiment(folder):
        raise UserError(f"{folder} has no {EXPERIMENT}: not a trained folder")
    runnable = Runnable.from_folder(folder)
    if (folder / WEIGHTS).exists():
        return files.read_tree(folder / WEIGHTS, skeleton(runnable.network, runnable.target))
    return runnable.untrained(name or folder.name)


def find(name: str) -> pathlib.Path:
    """The folder ``name`` stands for: a zoo entry's (``registry/NAME``), else the path itself."""
    entry = entry_folder(name)
    return entry if entry is not None else pathlib.Path(name)


def entry_folder(name: str) -> pathlib.Path | None:
    """The folder of zoo entry ``name``, or None if ``name`` is not an entry's name.

    A name is a single path component of letters, digits, ``.``, ``_`` and ``-``,
    so that no name reaches outside the zoo's folder.
    """
    if not ENTRY_NAME.fullmatch(name):
        return None
    folder = files.registry_dir() / name
    return folder if holds_experiment(folder) else None


def initial_weights(experiment: Experiment, stats: FieldStats, *,
                    key: jax.Array) -> AbstractParameterization:
    """The trained parameterization ``training.init_from`` names (a zoo entry or a folder);
    for a ``stochastic`` network whose ``mean`` is that entry's network, the entry's
    closure as its mean, with the noise built from ``stats`` and ``key``."""
    name = experiment.training.init_from
    folder = find(name)
    if not (folder / WEIGHTS).exists():
        raise UserError(f"training.init_from: {name!r} is neither a zoo entry nor a "
                        f"folder with a trained parameterization")
    start = load(folder)
    network = experiment.network
    if start.experiment.network == network:
        return start.parameterization
    if isinstance(network, StochasticSpec) and start.experiment.network == network.mean:
        fresh = network.build(stats, key=key, target=experiment.training.forcing_target)
        return eqx.tree_at(lambda closure: closure.mean, fresh, start.parameterization)
    raise UserError(f"training.init_from: {name!r} has network {start.experiment.network}, "
                    f"this experiment {network}")
