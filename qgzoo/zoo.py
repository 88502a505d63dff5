"""The zoo: named parameterizations in ``registry/``, ready to load and compare.

Each entry is a trained folder (``qgzoo.training.trained``) ``registry/NAME``
holding ``experiment.json``, ``parameterization.eqx`` (absent for physical
closures used with their published constants), ``log.jsonl`` and ``card.md``,
the model card that ``qgzoo zoo build NAME`` writes after training and scoring
it. ``registry/references`` holds the shipped benchmarks. The zoo's folder is
``qgzoo.core.files.registry_dir()`` (``QGZOO_REGISTRY`` points it elsewhere).
"""

from __future__ import annotations

import pathlib

from pydantic import ValidationError

from qgzoo.components.networks import AbstractParameterization
from qgzoo.core.errors import UserError
from qgzoo.core.files import read_json, read_text, registry_dir
from qgzoo.core.schema import validation_messages
from qgzoo.training import trained
from qgzoo.training.experiment import Experiment

CARD = "card.md"


def names() -> list[str]:
    """The entries' names, sorted."""
    root = registry_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if trained.entry_folder(p.name) is not None)


def folder(name: str) -> pathlib.Path:
    """The folder of entry ``name``; a name that is not an entry's (a path, say) is a
    ``UserError`` listing the entries."""
    path = trained.entry_folder(name)
    if path is None:
        raise UserError(f"no zoo entry {name!r}; entries: {', '.join(names()) or 'none'}")
    return path


def load(name: str) -> AbstractParameterization:
    """The parameterization of entry ``name``: a pyqg-jax ``param_func``.

    Use it as ``pyqg_jax.parameterizations.ParameterizedModel(model, param_func=p)``
    on the low-resolution model of the entry's experiment
    (``experiment(name).reference.lores_model()``).
    """
    return trained.load_parameterization(folder(name))


def experiment(name: str) -> Experiment:
    """The Experiment spec of entry ``name``."""
    return Experiment.from_file(folder(name) / trained.EXPERIMENT)


def unavailable(name: str) -> str | None:
    """Why entry ``name`` cannot run here (its network names a kind that no installed
    plugin provides, say), or None if it can (``trained.Runnable``)."""
    try:
        trained.Runnable.model_validate(read_json(folder(name) / trained.EXPERIMENT,
                                                  "experiment"))
    except ValidationError as error:
        return "; ".join(validation_messages(error))
    except UserError as error:
        return str(error)
    return None


def network_kind(name: str) -> str:
    """The network kind entry ``name`` declares, read from its JSON (no plugin needed)."""
    spec = read_json(folder(name) / trained.EXPERIMENT, "experiment")
    return str(spec.get("network", {}).get("kind", "?")) if isinstance(spec, dict) else "?"


def card(name: str) -> str:
    """The model card of entry ``name`` (its spec if no card was written yet)."""
    path = folder(name)
    if (path / CARD).exists():
        return read_text(path / CARD, "model card")
    return (f"# {name}\n\nNo model card yet: run `qgzoo zoo build {name}`.\n\n"
            f"```json\n{(path / trained.EXPERIMENT).read_text()}\n```\n")


def trains(name: str) -> bool:
    """Whether entry ``name`` is trained (as opposed to a closure with fixed constants)."""
    return experiment(name).training.steps > 0
