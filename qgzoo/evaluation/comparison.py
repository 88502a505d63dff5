"""Side-by-side comparison of parameterizations on the same references and metrics.

``compare`` runs every entry (a zoo name, a trained folder, or an inline spec,
see ``resolve``) on each benchmark (``qgzoo.evaluation.results``): its climate,
the 18 similarity scores against the unparameterized model, its stability, its
cost per step measured in the same process, and its offline skill. A sweep's
folder brings one entry per finished trial, grouped by configuration: the
leaderboard shows each group's mean and standard deviation over its seeds. Finished
runs are cached under ``<out>/cache`` by content, so adding an entry computes
only it. ``qgzoo.evaluation.report`` writes the leaderboard and report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib

import numpy as np

from qgzoo import zoo
from qgzoo.components.networks import NoClosure
from qgzoo.core import devices, files, plugins
from qgzoo.core.errors import UserError
from qgzoo.core.schema import validate_component
from qgzoo.data.reference import REFERENCES, ReferenceSpec
from qgzoo.evaluation import climate, protocols, report
from qgzoo.evaluation.benchmark import Benchmark, load_benchmark
from qgzoo.evaluation.results import BASELINE, NOISE, Entry, Result, cached_run, ship_run
from qgzoo.simulate import online
from qgzoo.training import trained
from qgzoo.training.experiment import Experiment

#: The reference of the leaderboard's main columns, and the transfer reference.
MAIN_BENCHMARK = "eddy-128-32"
TRANSFER_BENCHMARK = "jet-128-32"
#: The field's benchmark (Ross et al. 2023), scored under their protocol.
FIELD_BENCHMARKS = ("eddy-256-64", "jet-256-64")
FIELD_PROTOCOL = "ross2023"
#: A sweep's folder holds its trials' trained folders here, each with ``TRIAL_RESULT``:
#: ``{"status": "done", "configuration": LABEL, ...}`` (``qgzoo.sweeps`` writes them).
TRIALS = "trials"
TRIAL_RESULT = "result.json"


# --- the parameterizations --------------------------------------------------------

def entry_from_experiment(name: str, experiment: Experiment | dict, source: str = "") -> Entry:
    """An untrained entry: a network with constants only (a physical closure, none).

    Only the parts a run needs are validated (``trained.Runnable``); errors name
    ``source`` (a file), else the entry."""
    runnable = trained.Runnable.from_spec(experiment, source or f"entry {name!r}")
    return Entry(name, runnable.untrained(name), runnable.stepper.model_dump(mode="json"),
                 source=source or "spec")


def _entry_from_dict(item: dict, source: str = "") -> Entry:
    """An entry from a network spec ``{"kind": ...}`` or an Experiment's JSON."""
    if "kind" in item:
        label = ", ".join(f"{k}={v}" for k, v in item.items() if k != "kind")
        name = f"{item['kind']}({label})" if label else str(item["kind"])
        return entry_from_experiment(name, {"network": item}, source)
    network = item.get("network")
    name = str(network.get("kind", "spec")) if isinstance(network, dict) else "spec"
    return entry_from_experiment(name, item, source)


def entry_from_folder(folder: str | pathlib.Path, name: str | None = None) -> Entry:
    """An entry from a folder with experiment.json and, if trained, parameterization.eqx."""
    folder = pathlib.Path(folder)
    name = name or folder.name
    parameterization = trained.load_parameterization(folder, name)
    stepper = trained.Runnable.from_folder(folder).stepper
    return Entry(name, parameterization, stepper.model_dump(mode="json"),
                 tuple(trained.read_log(folder)), source=str(folder))


def entries_from_sweep(folder: str | pathlib.Path) -> list[Entry]:
    """One entry per finished trial of the sweep in ``folder``, named ``LABEL seed N`` and
    grouped as ``SWEEP LABEL`` (``SWEEP`` alone for a sweep of seeds only)."""
    folder = pathlib.Path(folder)
    entries = []
    for trial in sorted((folder / TRIALS).iterdir()):
        record = files.read_json(trial / TRIAL_RESULT, "trial result") \
            if (trial / TRIAL_RESULT).is_file() else {}
        if record.get("status") != "done":
            continue
        seed = trained.Runnable.from_folder(trial).training.seed
        group = " ".join(filter(None, [folder.name, record.get("configuration")]))
        entries.append(dataclasses.replace(entry_from_folder(trial, f"{group} seed {seed}"),
                                           group=group))
    if not entries:
        raise UserError(f"{folder} is a sweep with no finished trial yet; run `qgzoo sweep` "
                        f"to finish it")
    return entries


def resolve_all(item) -> list[Entry]:
    """The entries of ``item``: those of a sweep's folder (``entries_from_sweep``), else
    ``[resolve(item)]``."""
    if isinstance(item, (str, pathlib.Path)) and (pathlib.Path(item) / TRIALS).is_dir():
        return entries_from_sweep(item)
    return [resolve(item)]


def resolve(item) -> Entry:
    """An ``Entry`` from a zoo name, a folder, a JSON file, a network kind or spec dict.

    - a zoo entry's name (``qgzoo zoo list``);
    - a folder written by ``qgzoo train`` (or holding only experiment.json);
    - a JSON file: an Experiment, or a network spec ``{"kind": ..., ...}``;
    - a registered network kind (``"smagorinsky"``) with its default constants;
    - a dict: a network spec, or an Experiment; an ``Experiment``; an ``Entry``.

    What cannot be resolved is a ``UserError`` that names the item and why.
    """
    if isinstance(item, Entry):
        return item
    if isinstance(item, Experiment):
        return entry_from_experiment(item.network.kind, item)
    if isinstance(item, dict):
        return _entry_from_dict(item)
    item = str(item)
    if item in zoo.names():
        return entry_from_folder(zoo.folder(item), item)
    path = pathlib.Path(item)
    if path.is_dir():
        return entry_from_folder(path)
    if path.suffix == ".json" and path.is_file():
        data = files.read_json(path, "entry")
        if not isinstance(data, dict):
            raise UserError(f"{path} holds no spec (a JSON object)")
        return dataclasses.replace(_entry_from_dict(data, str(path)), name=path.stem)
    try:
        plugins.registry().spec_class("network", item)
    except plugins.UnknownKindError as error:
        raise UserError(f"{item!r} is neither a zoo entry ({', '.join(zoo.names()) or 'none'}), "
                        f"a folder nor a JSON file; as a network kind: {error}") from None
    return resolve({"kind": item})


# --- the comparison -------------------------------------------------------------

@dataclasses.dataclass
class Comparison:
    """Results of entries on benchmarks, with scores, costs and a leaderboard."""

    entries: list[Entry]
    benchmarks: list[Benchmark]
    results: dict[tuple[str, str], Result]
    """(entry name, benchmark name) -> Result; the baseline is under ``BASELINE``."""
    baseline: dict[str, Result]
    """benchmark name -> the unparameterized model's result."""
    ms_per_step: dict[str, float]
    """entry name (and ``BASELINE``, ``"high resolution"``) -> ms per model step."""

    def scores(self, entry: str, bench: str) -> dict[str, float]:
        """The 18 similarity scores of ``entry`` on benchmark ``bench``."""
        benchmark = next(b for b in self.benchmarks if b.name == bench)
        return climate.similarity_scores(self.results[entry, bench].climate,
                                         self.baseline[bench].climate, benchmark.hires,
                                         benchmark.kmax)

    def groups(self) -> dict[str, list[Entry]]:
        """Leaderboard rows: a group's name -> its entries (an entry without one is its own)."""
        groups: dict[str, list[Entry]] = {}
        for entry in self.entries:
            groups.setdefault(entry.group or entry.name, []).append(entry)
        return groups

    def rows(self) -> list[dict]:
        """One leaderboard row per group (``groups``), best first (stable runs, then mean
        score); a group of several seeds has each score's mean, its standard deviation
        (``KEY_std``, ddof 1) and ``seeds``, the number of them."""
        rows = []
        for name, members in self.groups().items():
            rows.append(self._row(name, self.entry_rows([e.name for e in members])))
        rank = lambda r: (-int(r["stable"].split("/")[0]) / int(r["stable"].split("/")[1]),
                          -r["mean"] if math.isfinite(r["mean"]) else math.inf)
        return sorted(rows, key=rank)

    @staticmethod
    def _row(name: str, members: list[dict]) -> dict:
        if len(members) == 1:
            return {**members[0], "entry": name, "seeds": 1}
        row = {"entry": name, "seeds": len(members)}
        for key, value in members[0].items():
            values = [m[key] for m in members]
            if key == "entry":
                continue
            if isinstance(value, str):  # "stable" counts: runs of all seeds together
                counts = np.array([[int(n) for n in v.split("/")] for v in values]).sum(axis=0)
                row[key] = f"{counts[0]}/{counts[1]}"
            elif key.startswith("published_"):  # a paper's numbers are not a sweep's
                row[key] = None
            elif key == "blowup_days":
                days = [v for v in values if v is not None]
                row[key] = min(days) if days else None
            else:
                row[key] = float(np.mean(values))
                row[f"{key}_std"] = float(np.std(values, ddof=1))
        return row

    def entry_rows(self, names: list[str] | None = None) -> list[dict]:
        """One row per entry (of ``names``, default all), in the order of the entries."""
        main, *others = self.benchmarks
        rows = []
        for entry in self.entries:
            if names is not None and entry.name not in names:
                continue
            result = self.results[entry.name, main.name]
            scores = np.array(list(self.scores(entry.name, main.name).values()))
            blowups = result.blowup_step[result.blowup_step >= 0]
            row = {
                "entry": entry.name,
                "mean": float(np.mean(scores)),
                "min": float(np.min(scores)),
                "better": int(np.sum(scores > 0)),
                "stable": f"{result.stable}/{result.blowup_step.size}",
                "blowup_days": (float(blowups.min() * result.dt / 86400) if blowups.size
                                else None),
                "ms_per_step": self.ms_per_step[entry.name],
                "x_lores": self.ms_per_step[entry.name] / self.ms_per_step[BASELINE],
                "x_hires": self.ms_per_step[entry.name] / self.ms_per_step["high resolution"],
                "r2_upper": float(result.offline["r2_all"][0]),
                "r2_lower": float(result.offline["r2_all"][1]),
            }
            published = zoo.published_scores(entry.name) if not entry.group else {}
            for bench in self.benchmarks:
                scores = published.get(bench.name, {})
                for key in ("mean", "min", "positive"):
                    row[f"published_{key}_{bench.name}"] = scores.get(key)
            for other in others:
                row[f"mean_{other.name}"] = float(np.mean(list(
                    self.scores(entry.name, other.name).values())))
                transfer = self.results[entry.name, other.name]
                row[f"stable_{other.name}"] = f"{transfer.stable}/{transfer.blowup_step.size}"
            rows.append(row)
        return rows

    def score_table(self) -> list[dict]:
        """Every similarity score: one record per (entry, benchmark)."""
        return [{"entry": e.name, "benchmark": b.name, **self.scores(e.name, b.name)}
                for b in self.benchmarks for e in self.entries]

    def table(self, markdown: bool = False) -> str:
        """The leaderboard as aligned text (terminal) or a Markdown table."""
        return report.table(self, markdown)

    def write(self, out: str | pathlib.Path, *, figures: bool = True) -> pathlib.Path:
        """Write the leaderboard, scores, figures and report.md to ``out`` (``qgzoo.evaluation.report``)."""
        return report.write(self, out, figures=figures)


def compare(entries=None, benchmarks=(MAIN_BENCHMARK, TRANSFER_BENCHMARK), *,
            protocol: str = protocols.DEFAULT_PROTOCOL,
            out: str | pathlib.Path | None = "runs/compare", cache: bool = True,
            ship: bool = False, figures: bool = True, progress: bool = True) -> Comparison:
    """Compare ``entries`` (see ``resolve``; default: ``default_entries``) on ``benchmarks``.

    The first benchmark makes the leaderboard's main columns, the others add a
    mean-similarity column each (transfer). ``protocol`` (``protocols.PROTOCOLS``) says how
    benchmarks given by name are run; under a long-run protocol the leaderboard also
    scores ``NOISE``, the unparameterized model from other random initial conditions,
    whose scores are the noise band. With ``out`` (locked while the
    comparison runs) the leaderboard, scores, figures and a report are written
    there, and runs are cached in ``out/cache`` (without, in
    ``$QGZOO_CACHE/runs``); ``cache=False`` recomputes them and replaces what
    the cache held. Runs the zoo ships (``results.shipped_runs``) are read, not
    computed; ``ship=True`` adds this comparison's runs to them.
    """
    if entries is None:
        entries = default_entries(benchmarks[0])
    resolved = [entry for item in entries for entry in resolve_all(item)]
    names = [e.name for e in resolved]
    duplicate = {n for n in names if names.count(n) > 1}
    if duplicate:
        raise UserError(f"entry names must be unique; repeated: {sorted(duplicate)}")
    clash = {e.group for e in resolved if e.group} & {e.name for e in resolved if not e.group}
    if clash:
        raise UserError(f"a sweep's row and an entry share the name {sorted(clash)}; rename "
                        f"the sweep's folder (its name starts its rows' names)")
    if out is not None and pathlib.Path(out).exists() and not pathlib.Path(out).is_dir():
        raise UserError(f"{out} is a file, not a folder; choose another output folder")
    # In a job of several processes, each steps its share of every entry's runs, and the
    # main one alone locks the folder and writes (``qgzoo.core.devices``).
    main = devices.is_main()
    progress = progress and main
    with files.locked(out) if out is not None and main else contextlib.nullcontext():
        devices.barrier(f"comparison {out} started")
        benches = [b if isinstance(b, Benchmark) else load_benchmark(b, protocol, progress=progress)
                   for b in benchmarks]
        cache_dir = pathlib.Path(out) / "cache" if out is not None else files.cache_dir() / "runs"
        none = Entry(BASELINE, NoClosure(), {"kind": "ab3", "dt": benches[0].reference.dt})
        if benches[0].protocol is not None:
            resolved.append(dataclasses.replace(none, name=NOISE, ensemble="independent"))
        results, baseline = {}, {}
        for bench in benches:
            for entry in [none, *resolved]:
                # Long runs show their own progress bar, labelled with the entry.
                label = f"{bench.name}: {entry.name}"
                if progress and bench.protocol is None:
                    print(f"{label} ...", end=" ", flush=True)
                result = cached_run(entry, bench, cache_dir, refresh=not cache, progress=progress)
                results[entry.name, bench.name] = result
                if ship and main:
                    ship_run(entry, bench, result)
                if progress:
                    print(f"{label + ': ' if bench.protocol is not None else ''}{result.stable}/"
                          f"{result.blowup_step.size} runs stable ({result.origin})", flush=True)
            baseline[bench.name] = results[BASELINE, bench.name]
        ms_per_step = measure_costs([none, *resolved], benches[0])
        comparison = Comparison(resolved, benches, results, baseline, ms_per_step)
        if out is not None and main:
            written = comparison.write(out, figures=figures)
            if progress:
                print(f"report: {written}")
    return comparison


def default_benchmarks(protocol: str = protocols.DEFAULT_PROTOCOL) -> tuple[str, str]:
    """What a comparison under ``protocol`` scores on by default: the field's benchmark
    under its protocol (``FIELD_PROTOCOL``), else the main and transfer references."""
    return FIELD_BENCHMARKS if protocol == FIELD_PROTOCOL else (MAIN_BENCHMARK, TRANSFER_BENCHMARK)


def default_entries(benchmark: str | Benchmark) -> list[str]:
    """The zoo entries made at ``benchmark``'s low resolution (a preset's name, a saved
    benchmark or a ``Benchmark``): what a comparison on it scores by default."""
    if isinstance(benchmark, Benchmark):
        lores_nx = benchmark.reference.lores_nx
    elif benchmark in REFERENCES:
        lores_nx = ReferenceSpec.model_validate(REFERENCES[benchmark]).lores_nx
    else:
        lores_nx = load_benchmark(benchmark, progress=False).reference.lores_nx
    return zoo.names(lores_nx=lores_nx)


def measure_costs(entries: list[Entry], bench: Benchmark, *, n_steps: int = 200,
                  rounds: int = 5) -> dict[str, float]:
    """ms per step of each entry's low-resolution model and of the high-resolution model.

    The loops are compiled first, then timed in ``rounds`` interleaved rounds and
    the fastest time of each is kept, so that a load that comes and goes biases
    no model against another.
    """
    lores = bench.lores_model()
    timers = {entry.name: (online.step_timer(
        lores, entry.parameterization, validate_component("stepper", entry.stepper).build(),
        bench.initial_q[0], n_steps), n_steps) for entry in entries}
    hires_steps = max(10, n_steps // 10)
    hires_stepper = validate_component("stepper", {"kind": "ab3", "dt": bench.reference.dt}).build()
    timers["high resolution"] = (online.step_timer(
        bench.hires_model(), NoClosure(), hires_stepper, bench.hires_snapshot, hires_steps),
        hires_steps)
    best = {name: math.inf for name in timers}
    for _ in range(rounds):
        for name, (timer, _steps) in timers.items():
            best[name] = min(best[name], timer())
    return {name: 1e3 * best[name] / steps for name, (_timer, steps) in timers.items()}
