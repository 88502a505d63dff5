"""The zoo: named parameterizations in ``registry/``, ready to load and compare.

Each entry is a trained folder (``qgzoo.training.trained``) ``registry/NAME``
holding ``experiment.json``, ``parameterization.eqx`` (absent for physical
closures used with their published constants), ``log.jsonl`` and ``card.md``,
the model card that ``qgzoo zoo build NAME`` writes after training and scoring
it. An entry of published weights holds them, unchanged and with their licence
and source, in ``published/``, from which its ``parameterization.eqx`` is
converted. ``registry/references`` holds the shipped benchmarks. The zoo's folder is
``qgzoo.core.files.registry_dir()`` (``QGZOO_REGISTRY`` points it elsewhere).
"""

from __future__ import annotations

import pathlib

from pydantic import ValidationError

from qgzoo.components.networks import AbstractParameterization
from qgzoo.core.errors import UserError
from qgzoo.core.files import read_json, read_text, registry_dir
from qgzoo.core.schema import validation_messages
from qgzoo.data.reference import REFERENCES, ReferenceSpec
from qgzoo.training import trained
from qgzoo.training.experiment import Experiment

CARD = "card.md"
PUBLISHED = "published"
#: An entry's scores as a paper reports them: ``{"source": ..., "scores": {BENCHMARK:
#: {"mean": ..., "min": ..., "positive": ...}}}`` (mean and min of the 18 similarity
#: scores, how many are positive; only ``mean`` is required).
PUBLISHED_SCORES = "published-scores.json"


def names(*, lores_nx: int | None = None) -> list[str]:
    """The entries' names, sorted; with ``lores_nx``, only those made at that low
    resolution (the grid their experiment's reference coarsens to)."""
    root = registry_dir()
    if not root.is_dir():
        return []
    found = sorted(p.name for p in root.iterdir() if trained.entry_folder(p.name) is not None)
    return [name for name in found if lores_nx is None or grids(name)[1] == lores_nx]


def grids(name: str) -> tuple[int, int]:
    """(high, low) resolution of the reference entry ``name`` was made on, read from its
    JSON (no plugin needed)."""
    spec = read_json(folder(name) / trained.EXPERIMENT, "experiment")
    reference = spec.get("reference", {}) if isinstance(spec, dict) else {}
    return tuple(reference.get(key, ReferenceSpec.model_fields[key].default)
                 for key in ("hires_nx", "lores_nx"))


def benchmarks(name: str) -> tuple[str, ...]:
    """The reference presets entry ``name`` is scored on: that of its experiment's
    configuration and resolution (``CONFIG-HIRES-LORES``), then the other
    configurations' at that resolution (transfer): eddy then jet for an entry made on
    the eddy, jet then eddy for one made (or fine-tuned) on the jet."""
    reference = experiment(name).reference
    grid = f"{reference.hires_nx}-{reference.lores_nx}"
    configs = dict.fromkeys((reference.config, "eddy", "jet"))
    found = tuple(f"{config}-{grid}" for config in configs if f"{config}-{grid}" in REFERENCES)
    if not found:
        raise UserError(f"{name}: no reference preset at {reference.hires_nx} -> "
                        f"{reference.lores_nx}; presets: {', '.join(REFERENCES)}")
    return found


def published(name: str) -> pathlib.Path | None:
    """The folder of entry ``name``'s published weights, or None if it has none."""
    path = folder(name) / PUBLISHED
    return path if path.is_dir() else None


def published_scores(name: str) -> dict[str, dict[str, float]]:
    """Benchmark name -> the published scores of entry ``name`` on it (``PUBLISHED_SCORES``);
    empty if no paper reports any (or ``name`` is not an entry's)."""
    path = trained.entry_folder(name)
    if path is None or not (path / PUBLISHED_SCORES).is_file():
        return {}
    return read_json(path / PUBLISHED_SCORES, "published scores")["scores"]


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
    (``experiment(name).reference.lores_model()``); a stochastic closure also needs
    ``init_param_aux_func=p.init_aux`` (any closure accepts it).
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
    """Whether entry ``name`` is trained here (as opposed to a closure with fixed
    constants, or published weights)."""
    return experiment(name).training.trains
