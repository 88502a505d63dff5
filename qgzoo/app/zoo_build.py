"""Reproducing the zoo: train an entry from its spec, score it, write its card; ship a
reference's benchmark."""

from __future__ import annotations

import datetime
import pathlib
import platform

from qgzoo import zoo
from qgzoo.components.networks import load_fullycnn
from qgzoo.core import files
from qgzoo.core.plugins import distribution_version
from qgzoo.evaluation.benchmark import load_benchmark, shipped_path
from qgzoo.evaluation.comparison import FIELD_BENCHMARKS, FIELD_PROTOCOL, Comparison, compare
from qgzoo.evaluation.protocols import DEFAULT_PROTOCOL
from qgzoo.evaluation.results import BASELINE, NOISE
from qgzoo.training import trained, trainer
from qgzoo.training.experiment import Experiment


def build_entry(name: str, *, train: bool = True, progress: bool = True) -> pathlib.Path:
    """Reproduce entry ``name``: train it from its experiment.json (or convert its
    published weights), score it, write its card.

    Entries whose training changes nothing (``TrainingSpec.trains``) are not trained;
    their card is written all the same. Training data come from the reference store (built if not
    cached); scores from ``qgzoo.compare`` on the benchmarks of the entry's
    resolution (``zoo.benchmarks``), under Ross et al.'s protocol for the field's
    benchmark. ``train=False`` only rescores it.
    """
    path = zoo.folder(name)
    spec = zoo.experiment(name)
    published = zoo.published(name)
    if train and published is not None:
        files.write_tree(path / trained.WEIGHTS, load_fullycnn(published))
    elif train and spec.training.trains:
        trainer.train(spec, path, progress=progress, overwrite=True)
        files.remove(path / trained.CHECKPOINT)
    benchmarks = zoo.benchmarks(name)
    protocol = FIELD_PROTOCOL if set(benchmarks) == set(FIELD_BENCHMARKS) else DEFAULT_PROTOCOL
    comparison = compare([name], benchmarks, protocol=protocol, out=None, progress=progress)
    files.atomic_write_text(path / zoo.CARD, model_card(name, spec, comparison))
    return path


def model_card(name: str, spec: Experiment, comparison: Comparison) -> str:
    """The model card of entry ``name``: data, training, scores of ``comparison``, spec."""
    main = comparison.benchmarks[0]
    row = next(row for row in comparison.rows() if row["entry"] == name)
    result = comparison.results[name, main.name]
    scores = comparison.scores(name, main.name)
    training = spec.training
    history = comparison.entries[0].history
    if training.method == "least_squares":
        [fit] = history
        how = (f"least squares in closed form on `{training.forcing_target}` at "
               f"{fit['points']} grid points of the training samples, ridge {training.ridge:g}; "
               f"R^2 on them {fit['r2'][0]:.3f} / {fit['r2'][1]:.3f} (upper / lower)")
    elif training.method == "eki":
        eki, last = training.eki, history[-1]
        how = (f"ensemble Kalman inversion, {training.steps} iterations of {eki.members} "
               f"members, each a {eki.run_days:g}-day run from a coarsened training state "
               f"whose last {eki.average_days:g} days are matched to the training runs' "
               f"climate; {sum(h['seconds'] for h in history):.0f} s on {platform.machine()} "
               f"CPU; last misfit {last['loss']:.3g} (mean), {last['best_misfit']:.3g} (best "
               f"member), {sum(h['blown_up'] for h in history)} member runs blew up")
    elif training.steps:
        seconds = sum(h["seconds"] for h in history)
        skipped = sum(not h["finite"] for h in history)
        mode = (f"online, {training.rollout_steps}-sample rollouts" if training.rollout_steps
                else f"offline, on {training.forcing_target}")
        how = (f"{mode}, loss `{spec.loss.kind}`, {training.steps} updates of batch "
               f"{training.batch_size}; {seconds:.0f} s of updates on {platform.machine()} "
               f"CPU ({skipped} updates skipped)")
        if training.init_from:
            how = f"from the weights of `{training.init_from}`, then {how}"
    elif zoo.published(name) is not None:
        how = (f"not trained here: published weights, converted from `{zoo.PUBLISHED}/` "
               f"(source and licence: `{zoo.PUBLISHED}/SOURCE.md`, `{zoo.PUBLISHED}/LICENSE`)")
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
        f"## Scores on `{main.name}`", "", f"Runs: {main.describe_runs()}.", "",
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
    noise = next((r for r in comparison.rows() if r["entry"] == NOISE), None)
    if noise is not None:
        lines.append(f"- noise band, `{NOISE}` (the unparameterized model from other initial "
                     f"conditions): mean {noise['mean']:.2f} on `{main.name}`")
    for bench in comparison.benchmarks:
        if row.get(f"published_mean_{bench.name}") is not None:
            lines.append(f"- published mean similarity on `{bench.name}`: "
                         f"{row[f'published_mean_{bench.name}']:.2f} (`{zoo.PUBLISHED_SCORES}`)")
    lines += ["", "| metric | similarity |", "|---|---:|"]
    lines += [f"| {metric} | {value:.2f} |" for metric, value in scores.items()]
    lines += ["", "## Experiment", "", "```json", spec.to_json(), "```", ""]
    return "\n".join(lines)


def ship_benchmark(name: str, protocol: str = DEFAULT_PROTOCOL) -> pathlib.Path:
    """Write the benchmark of reference preset ``name`` under ``protocol`` into the zoo, made
    from its store or its long runs (``load_benchmark``) if it is not cached; returns the file."""
    path = shipped_path(name, protocol)
    path.unlink(missing_ok=True)
    return load_benchmark(name, protocol).save(path)
