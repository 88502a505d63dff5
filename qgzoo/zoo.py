"""The zoo: named parameterizations in ``registry/``, ready to load and compare.

Each entry is a folder ``registry/NAME`` holding ``experiment.json`` (the spec
that made it), ``parameterization.eqx`` (trained weights and fitted scales;
absent for physical closures used with their published constants),
``log.jsonl`` (the training log) and ``card.md``, the model card that
``qgzoo zoo build NAME`` writes after training and scoring it.
``registry/references`` holds the shipped benchmarks (``qgzoo zoo benchmark``).

``QGZOO_REGISTRY`` points the zoo at another folder.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform

from qgzoo.plugins import distribution_version
from qgzoo.networks import AbstractParameterization

CARD = "card.md"


def registry_dir() -> pathlib.Path:
    """The zoo's folder: ``$QGZOO_REGISTRY``, else ``registry/`` of this checkout."""
    default = pathlib.Path(__file__).resolve().parents[1] / "registry"
    return pathlib.Path(os.environ.get("QGZOO_REGISTRY", default))


def names() -> list[str]:
    """The entries' names, sorted."""
    root = registry_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "experiment.json").is_file())


def folder(name: str) -> pathlib.Path:
    """The folder of entry ``name``; KeyError listing the entries if there is none."""
    path = registry_dir() / name
    if not (path / "experiment.json").is_file():
        raise KeyError(f"no zoo entry {name!r}; entries: {', '.join(names()) or 'none'}")
    return path


def entry(name: str):
    """Entry ``name`` as a ``qgzoo.comparison.Entry``."""
    from qgzoo.comparison import entry_from_folder
    return entry_from_folder(folder(name), name)


def load(name: str) -> AbstractParameterization:
    """The parameterization of entry ``name``: a pyqg-jax ``param_func``.

    Use it as ``pyqg_jax.parameterizations.ParameterizedModel(model, param_func=p)``
    on the low-resolution model of the entry's experiment
    (``experiment(name).reference.lores_model()``).
    """
    return entry(name).parameterization


def experiment(name: str):
    """The Experiment spec of entry ``name``."""
    from qgzoo.experiment import Experiment
    return Experiment.from_file(folder(name) / "experiment.json")


def card(name: str) -> str:
    """The model card of entry ``name`` (its spec if no card was written yet)."""
    path = folder(name)
    if (path / CARD).exists():
        return (path / CARD).read_text()
    return (f"# {name}\n\nNo model card yet: run `qgzoo zoo build {name}`.\n\n"
            f"```json\n{(path / 'experiment.json').read_text()}\n```\n")


def trains(name: str) -> bool:
    """Whether entry ``name`` is trained (as opposed to a closure with fixed constants)."""
    return experiment(name).training.steps > 0


def build(name: str, *, train: bool = True, progress: bool = True) -> pathlib.Path:
    """Reproduce entry ``name``: train it from its experiment.json, score it, write its card.

    Entries with ``training.steps == 0`` are not trained; their card is written
    all the same. Training data come from the reference store (built if not
    cached); scores from ``qgzoo.compare`` on the main and transfer benchmarks.
    ``train=False`` only rescores an entry trained before.
    """
    from qgzoo import trainer
    from qgzoo.comparison import compare
    path = folder(name)
    spec = experiment(name)
    if train and spec.training.steps > 0:
        for stale in ("parameterization.eqx", trainer.LOG, trainer.CHECKPOINT):
            (path / stale).unlink(missing_ok=True)
        trainer.train(spec, path, progress=progress)
        (path / trainer.CHECKPOINT).unlink(missing_ok=True)
    comparison = compare([name], out=None, progress=progress)
    (path / CARD).write_text(_card(name, spec, comparison))
    return path


def _card(name, spec, comparison) -> str:
    from qgzoo.comparison import BASELINE
    main = comparison.benchmarks[0]
    row = comparison.rows()[0]
    result = comparison.results[name, main.name]
    scores = comparison.scores(name, main.name)
    training = spec.training
    history = comparison.entries[0].history
    if training.steps:
        seconds = sum(h["seconds"] for h in history)
        skipped = sum(not h["finite"] for h in history)
        mode = (f"online, {training.rollout_steps}-sample rollouts" if training.rollout_steps
                else f"offline, on {training.forcing_target}")
        how = (f"{mode}, loss `{spec.loss.kind}`, {training.steps} updates of batch "
               f"{training.batch_size}; {seconds:.0f} s of updates on {platform.machine()} "
               f"CPU ({skipped} updates skipped)")
        if training.init_from:
            how = f"from the weights of `{training.init_from}`, then {how}"
    else:
        how = "not trained: constants as in the spec"
    lines = [
        f"# {name}", "",
        f"- network: `{spec.network.kind}`; coarsener `{spec.coarsener.kind}`; "
        f"stepper `{spec.stepper.kind}`, dt {spec.stepper.dt:g} s",
        f"- data: {spec.reference.config} {spec.reference.hires_nx} -> "
        f"{spec.reference.lores_nx}, runs {list(spec.reference.split_runs()['train'])} for "
        f"training, held-out runs {list(spec.reference.split_runs()['test'])}",
        f"- training: {how}",
        f"- reproduce: `qgzoo zoo build {name}`",
        f"- made by qgzoo {distribution_version('qgzoo')} on {datetime.date.today().isoformat()}", "",
        f"## Scores on `{main.name}` (held-out runs {main.test_runs})", "",
        f"- online similarity to high resolution: mean {row['mean']:.2f}, min {row['min']:.2f}, "
        f"better than no parameterization on {row['better']} of 18",
        f"- stable runs: {row['stable']}"
        + (f", first blow-up on day {row['blowup_days']:.0f}" if row["blowup_days"] is not None else ""),
        f"- cost: {row['ms_per_step']:.3g} ms/step, x{row['x_lores']:.2g} the model without "
        f"parameterization ({comparison.ms_per_step[BASELINE]:.3g} ms), x{row['x_hires']:.2g} "
        f"high resolution",
        "- offline skill on the held-out forcing (upper, lower layer):",
    ]
    for key, value in result.offline.items():
        lines.append(f"  - {key}: {value[0]:.3f}, {value[1]:.3f}")
    for other in comparison.benchmarks[1:]:
        lines.append(f"- transfer, mean similarity on `{other.name}`: "
                     f"{row[f'mean_{other.name}']:.2f}")
    lines += ["", "| metric | similarity |", "|---|---:|"]
    lines += [f"| {metric} | {value:.2f} |" for metric, value in scores.items()]
    lines += ["", "## Experiment", "", "```json", spec.to_json(), "```", ""]
    return "\n".join(lines)

