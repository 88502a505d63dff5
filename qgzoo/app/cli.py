"""The ``qgzoo`` command: plugins, specs, training, data, comparison, the zoo, the demo."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from pydantic import ValidationError

from qgzoo import zoo
from qgzoo.app import demo, zoo_build
from qgzoo.core import devices, files, plugins
from qgzoo.core.errors import UserError
from qgzoo.core.schema import invalid_spec, validate_component
from qgzoo.data import store
from qgzoo.data.reference import REFERENCES, ReferenceSpec
from qgzoo.evaluation.comparison import (
    FIELD_BENCHMARKS, MAIN_BENCHMARK, TRANSFER_BENCHMARK, compare, default_benchmarks)
from qgzoo.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from qgzoo.sweeps import Sweep, sweep, sweep_schema
from qgzoo.training.experiment import Experiment, schema
from qgzoo.training.presets import EXPERIMENTS
from qgzoo.training.trained import Runnable
from qgzoo.training.trainer import train

_COLUMNS = ("category", "kind", "plugin", "distribution", "version")


def main(argv: list[str] | None = None) -> int:
    """Run the ``qgzoo`` command with ``argv`` (default: sys.argv[1:]); returns the exit status.

    A fault the user can fix (``UserError``, an invalid spec, a file that cannot
    be read or written) prints one ``error:`` message and returns 2; a bug in
    qgzoo or a plugin prints one line and returns 1, with the traceback under
    ``--debug``; an interrupt returns 130.
    """
    args = _parser().parse_args(argv)
    try:
        devices.configure(args.devices, args.processes, args.process_id, args.coordinator,
                          heartbeat_seconds=args.heartbeat)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.devices or args.processes:
        print(f"qgzoo: {devices.describe()}", file=sys.stderr)
    if not devices.is_main():
        # The main process reports; the others only compute their share.
        sys.stdout = open(os.devnull, "w")
    if args.command is not plugins_command:
        for problem in plugins.registry().problems:
            print(f"qgzoo: warning: plugin {problem.plugin}: {problem.message}", file=sys.stderr)
    try:
        return args.command(args)
    except BrokenPipeError:
        # The reader went away (`qgzoo schema | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("\nqgzoo: interrupted; what was saved is kept (run the same command again: a "
              "training with training.checkpoint_every resumes from its last checkpoint)",
              file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        error = devices.lost(error) or error
        message, status = _describe(error)
        print(f"error: {message}", file=sys.stderr)
        if isinstance(error, devices.ProcessLost):
            # JAX's shutdown would wait for the lost process, then abort.
            sys.stderr.flush()
            os._exit(status)
        return status


def _describe(error: Exception) -> tuple[str, int]:
    """The message and exit status of an error that ended a command."""
    if isinstance(error, UserError):
        return str(error), 2
    if isinstance(error, ValidationError):
        return str(invalid_spec("the input", error)), 2
    if isinstance(error, OSError) and error.filename is not None:
        return f"cannot use {error.filename}: {error.strerror}", 2
    return (f"internal error, {type(error).__name__}: {error} (a bug in qgzoo or a plugin; "
            f"rerun with --debug for the traceback and report it)"), 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qgzoo", description="Subgrid parameterizations for two-layer QG turbulence.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of its one-line message")
    environment = {name: os.environ.get(variable) or None
                   for name, variable in devices.ENVIRONMENT.items()}
    jobs = parser.add_argument_group(
        "devices and processes", "how runs and training batches are split (default: one "
        "device, one process; each option's default is read from the variable named)")
    jobs.add_argument("--devices", type=_count, default=environment["devices"], metavar="N",
                      help="devices this process uses; on a CPU, XLA makes N (one per core is "
                           "fastest here) [QGZOO_DEVICES]")
    jobs.add_argument("--processes", type=_processes, default=environment["processes"],
                      metavar="N", help="processes of the job, started one per host or core, "
                      "each with the same command; 'auto' reads them from Slurm, Open MPI or "
                      "Kubernetes [QGZOO_PROCESSES]")
    jobs.add_argument("--process-id", type=int, default=environment["process_id"], metavar="I",
                      help="this process's number, 0 to N - 1 [QGZOO_PROCESS_ID]")
    jobs.add_argument("--coordinator", default=environment["coordinator"], metavar="HOST:PORT",
                      help="address of process 0, which every process connects to "
                           "[QGZOO_COORDINATOR]")
    jobs.add_argument("--heartbeat", type=_count, default=100, metavar="SECONDS",
                      help="how long the others wait for word from a silent process before "
                           "the job stops (default: 100)")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    listing = commands.add_parser("plugins", help="list installed component kinds and problems")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(command=plugins_command)

    preset = commands.add_parser("spec", help="print a preset experiment as JSON")
    preset.add_argument("name", choices=sorted(EXPERIMENTS), help="preset name")
    preset.set_defaults(command=spec_command)

    schema_parser = commands.add_parser("schema", help="print the Experiment JSON Schema")
    schema_parser.add_argument("--sweep", action="store_true",
                               help="the Sweep's schema instead (qgzoo sweep)")
    schema_parser.set_defaults(command=schema_command)
    _add_training_commands(commands)
    _add_data_commands(commands)
    _add_comparison_commands(commands)
    _add_sweep_command(commands)
    _add_zoo_commands(commands)
    demo_parser = commands.add_parser("demo", help="compare the shipped zoo and write the report")
    demo_parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/demo"),
                             metavar="DIR", help="output folder (default: runs/demo)")
    demo_parser.set_defaults(command=demo_command)
    return parser


def _add_training_commands(commands) -> None:
    training = commands.add_parser("train", help="train the experiment declared in a JSON file")
    training.add_argument("spec", type=pathlib.Path, metavar="SPEC.json")
    training.add_argument("--out", type=pathlib.Path, metavar="DIR",
                          help="output folder (default: runs/<spec file stem>)")
    training.add_argument("--steps", type=_count, metavar="N", help="override training.steps")
    training.add_argument("--overwrite", action="store_true",
                          help="replace the results of a different experiment in --out")
    training.add_argument("--no-progress", action="store_true", help="hide progress bars")
    training.set_defaults(command=train_command)


def _processes(text: str) -> int | str:
    """A number of processes, or "auto", as an argument."""
    return text if text == "auto" else _count(text)


def _location(text: str):
    """A folder or an fsspec URL, as an argument."""
    try:
        return files.location(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_data_commands(commands) -> None:
    data = commands.add_parser("data", help="build and inspect reference stores")
    data_commands = data.add_subparsers(title="data commands", required=True, metavar="COMMAND")
    building = data_commands.add_parser(
        "build", help="build (or resume) a reference store from a spec or preset")
    building.add_argument("spec", metavar="SPEC",
                          help=f"reference or experiment JSON file, or a preset: "
                               f"{', '.join(REFERENCES)}")
    building.add_argument("--out", type=_location, metavar="PATH",
                          help="store folder or fsspec URL, e.g. s3://bucket/ref.zarr "
                               "(default: $QGZOO_STORES or the cache, keyed by the spec)")
    building.add_argument("--workers", type=_count, metavar="N",
                          help="build the runs in N groups side by side, on a local Dask "
                               "cluster of N worker processes")
    building.add_argument("--scheduler", metavar="ADDRESS",
                          help="build the runs in groups on the workers of this Dask cluster")
    building.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    building.set_defaults(command=data_build_command)
    info = data_commands.add_parser(
        "info", help="describe a reference store, checking what it holds now")
    info.add_argument("path", type=_location, metavar="PATH",
                      help="store folder or fsspec URL")
    info.add_argument("--verify", action="store_true",
                      help="also compare every file with the SHA-256 recorded at build time")
    info.set_defaults(command=data_info_command)


def _add_comparison_commands(commands) -> None:
    comparing = commands.add_parser(
        "compare", help="compare parameterizations: leaderboard, scores, figures, report")
    comparing.add_argument(
        "entries", nargs="*", metavar="ENTRY",
        help="zoo entry names, trained folders, experiment or network JSON files, or network "
             "kinds (default: every zoo entry)")
    comparing.add_argument(
        "--benchmark", action="append", metavar="NAME", dest="benchmarks",
        help=f"reference to score on, repeatable; the first makes the leaderboard "
             f"(default: {MAIN_BENCHMARK} then {TRANSFER_BENCHMARK}, or "
             f"{' then '.join(FIELD_BENCHMARKS)} under --protocol ross2023; a preset: "
             f"{', '.join(REFERENCES)}; or a saved benchmark, a .npz file or URL)")
    comparing.add_argument(
        "--protocol", choices=sorted(PROTOCOLS), default=DEFAULT_PROTOCOL,
        help=f"how the runs are made (default: {DEFAULT_PROTOCOL}, from held-out states; "
             f"ross2023: Ross et al.'s 10-year runs from random initial conditions)")
    comparing.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/compare"),
                           metavar="DIR", help="output folder (default: runs/compare)")
    comparing.add_argument("--no-cache", action="store_true",
                           help="recompute every run (and replace its cached result)")
    comparing.add_argument("--no-figures", action="store_true", help="skip the figures")
    comparing.add_argument(
        "--ship", action="store_true",
        help="keep the runs in the zoo (registry/references/runs), where every comparison "
             "reads them instead of computing them")
    comparing.set_defaults(command=compare_command)


def _add_sweep_command(commands) -> None:
    sweeping = commands.add_parser(
        "sweep", help="train and score every trial of a sweep on Dask; mean +- std over seeds")
    sweeping.add_argument("spec", type=pathlib.Path, metavar="SWEEP.json")
    sweeping.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/sweep"),
                          metavar="DIR", help="output folder (default: runs/sweep)")
    sweeping.add_argument("--scheduler", metavar="ADDRESS",
                          help="a Dask scheduler (default: a local cluster on this machine)")
    sweeping.add_argument("--workers", type=_count, metavar="N",
                          help="worker processes of the local cluster (default: one per core)")
    sweeping.set_defaults(command=sweep_command)


def _add_zoo_commands(commands) -> None:
    zoo_parser = commands.add_parser("zoo", help="list, show, reproduce the zoo's entries")
    zoo_commands = zoo_parser.add_subparsers(title="zoo commands", required=True, metavar="COMMAND")
    zoo_commands.add_parser("list", help="list the entries").set_defaults(command=zoo_list_command)
    showing = zoo_commands.add_parser("show", help="print an entry's model card")
    showing.add_argument("name", metavar="NAME")
    showing.set_defaults(command=zoo_show_command)
    rebuilding = zoo_commands.add_parser(
        "build", help="reproduce an entry: train it from its spec, score it, write its card")
    rebuilding.add_argument("names", nargs="+", metavar="NAME")
    rebuilding.add_argument("--no-train", action="store_true",
                            help="keep the trained weights, only rescore and rewrite the card")
    rebuilding.set_defaults(command=zoo_build_command)
    shipping = zoo_commands.add_parser(
        "benchmark", help="derive a reference's benchmark from its store (built if needed) "
                          "into registry/references")
    shipping.add_argument("name", choices=sorted(REFERENCES), metavar="NAME")
    shipping.add_argument("--protocol", choices=sorted(PROTOCOLS), default=DEFAULT_PROTOCOL,
                          help="restarts: from the store; ross2023: from long runs")
    shipping.set_defaults(command=zoo_benchmark_command)


def plugins_command(args: argparse.Namespace) -> int:
    """Print every registered kind with the plugin and distribution providing it, then problems."""
    registry = plugins.registry()
    rows = [{name: getattr(reg, name) for name in _COLUMNS} for reg in registry.registrations()]
    if args.json:
        problems = [{"plugin": p.plugin, "problem": p.message} for p in registry.problems]
        print(json.dumps(rows + problems, indent=2))
        return 0
    print(_table([dict(zip(_COLUMNS, _COLUMNS))] + rows))
    if registry.problems:
        print(f"\nPROBLEMS ({len(registry.problems)}):")
        for problem in registry.problems:
            print(f"  ! {problem.plugin}: {problem.message}")
    return 0


def _table(rows: list[dict]) -> str:
    widths = {c: max(len(str(row[c])) for row in rows) for c in _COLUMNS}
    lines = ["  ".join(str(row[c]).ljust(widths[c]) for c in _COLUMNS).rstrip() for row in rows]
    return "\n".join(lines)


def spec_command(args: argparse.Namespace) -> int:
    """Print a preset experiment as JSON, a starting point for ``qgzoo train``."""
    print(EXPERIMENTS[args.name]().to_json())
    return 0


def schema_command(args: argparse.Namespace) -> int:
    """Print the JSON Schema of Experiment (or Sweep), with every installed component kind."""
    print(json.dumps(sweep_schema() if args.sweep else schema(), indent=2))
    return 0


def _count(text: str) -> int:
    """An argparse type: a whole number, at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def train_command(args: argparse.Namespace) -> int:
    """Validate a spec file, train it into ``--out`` and report the result."""
    experiment = Experiment.from_file(args.spec)
    if args.steps is not None:
        # Specs are frozen and validated as a whole: rebuild rather than patch.
        data = experiment.model_dump(mode="json")
        data["training"]["steps"] = args.steps
        try:
            experiment = Experiment.model_validate(data)
        except ValidationError as error:
            raise invalid_spec(f"{args.spec} with --steps {args.steps}", error) from None
    out = args.out if args.out is not None else pathlib.Path("runs") / args.spec.stem
    trained = train(experiment, out=out, progress=not args.no_progress, overwrite=args.overwrite)
    last = trained.history[-1] if trained.history else None
    final = ("n/a (no updates)" if last is None else
             f"n/a (update {last['step']} was skipped)" if last["loss"] is None else
             f"{last['loss']:.6g}")
    print(f"saved to {out}")
    print(f"final loss: {final}")
    print(f"skipped updates: {trained.skipped}")
    return 0


def _reference_spec(text: str) -> ReferenceSpec:
    """The reference of a preset name, or of a reference or experiment JSON file."""
    if text in REFERENCES:
        spec = ReferenceSpec.model_validate(REFERENCES[text])
    else:
        content = files.read_json(text, "reference spec")
        try:
            if isinstance(content, dict) and "reference" in content:  # an experiment
                experiment = Experiment.model_validate(content)
                return experiment.reference.with_coarsener(experiment.coarsener)
            spec = ReferenceSpec.model_validate(content)
        except ValidationError as error:
            raise invalid_spec(text, error) from None
    if not spec.coarseners:
        spec = spec.with_coarsener(validate_component("coarsener", {"kind": "operator1"}))
    return spec


def data_build_command(args: argparse.Namespace) -> int:
    """Build or resume the store of a reference spec, then print its description."""
    spec = _reference_spec(args.spec)
    path = args.out or store.store_path(spec)
    store.build_store(spec, path, progress=not args.no_progress, workers=args.workers or None,
                      scheduler=args.scheduler)
    print(store.describe_store(path))
    return 0


def data_info_command(args: argparse.Namespace) -> int:
    """Print a store's spec, sizes, splits, checks and per-layer statistics; ``--verify``
    first compares its files with their checksums. A damaged store is a StoreError."""
    print(store.describe_store(args.path, verify=args.verify))
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """Compare entries and write the leaderboard, scores, figures and report."""
    benchmarks = args.benchmarks or default_benchmarks(args.protocol)
    comparison = compare(args.entries or None, benchmarks, protocol=args.protocol, out=args.out,
                         cache=not args.no_cache, ship=args.ship, figures=not args.no_figures)
    print()
    print(comparison.table())
    return 0


def sweep_command(args: argparse.Namespace) -> int:
    """Run the trials of a sweep not done yet in ``--out`` and print the spread per
    configuration."""
    result = sweep(Sweep.from_file(args.spec), args.out, scheduler=args.scheduler,
                   n_workers=args.workers or None)
    print(result.table())
    print(f"\nper trial: {args.out / 'summary.json'}")
    return 0


def zoo_list_command(args: argparse.Namespace) -> int:
    """One line per entry: name, grids, network kind, how it was made (or what it lacks here)."""
    names = zoo.names()
    width = max((len(name) for name in names), default=0) + 1
    for name in names:
        problem = zoo.unavailable(name)
        if problem is not None:
            print(f"{name:{width}} {'':9} {zoo.network_kind(name):24} unavailable: {problem}")
            continue
        spec = Runnable.from_folder(zoo.folder(name))
        training = spec.training
        how = ("published weights" if zoo.published(name) is not None else
               "fixed constants" if not training.steps else
               f"online, T = {training.rollout_steps} samples" if training.rollout_steps else
               f"offline, on {training.forcing_target}")
        grids = "{}->{}".format(*zoo.grids(name))
        print(f"{name:{width}} {grids:9} {spec.network.kind:24} {how}")
    return 0


def zoo_show_command(args: argparse.Namespace) -> int:
    """Print the model card of an entry."""
    print(zoo.card(args.name))
    return 0


def zoo_build_command(args: argparse.Namespace) -> int:
    """Train, score and write the card of each named entry (all names checked first)."""
    for name in args.names:
        zoo.folder(name)
    for name in args.names:
        path = zoo_build.build_entry(name, train=not args.no_train)
        print(f"{name}: {path / zoo.CARD}")
    return 0


def zoo_benchmark_command(args: argparse.Namespace) -> int:
    """Write registry/references/NAME.npz from the reference store."""
    print(zoo_build.ship_benchmark(args.name, args.protocol))
    return 0


def demo_command(args: argparse.Namespace) -> int:
    """Run ``qgzoo.app.demo.main``."""
    demo.main(out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
