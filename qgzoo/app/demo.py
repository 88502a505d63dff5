"""The main job: compare the shipped zoo on the shipped references and write the report."""

from __future__ import annotations

import pathlib
import time

from qgzoo import zoo
from qgzoo.evaluation.benchmark import load_benchmark, shipped_path
from qgzoo.evaluation.comparison import (
    FIELD_BENCHMARKS, FIELD_PROTOCOL, MAIN_BENCHMARK, TRANSFER_BENCHMARK, Comparison, compare,
    default_entries, resolve)
from qgzoo.evaluation.results import shipped_run


def main(out: str | pathlib.Path = "runs/demo", *, figures: bool = True) -> Comparison:
    """Compare every zoo entry made at the eddy reference's resolution on it and on the jet
    (transfer), then the field's benchmark from its shipped runs (``field``); print the
    leaderboards."""
    start = time.perf_counter()
    comparison = _main_benchmark(out, figures)
    print(origins(comparison))
    field_comparison = field(pathlib.Path(out) / "field", figures=figures)
    if field_comparison is not None:
        print(origins(field_comparison))
    print(f"\nReports, figures, CSV and JSON in {out} ({time.perf_counter() - start:.0f} s).")
    return comparison


def origins(comparison: Comparison) -> str:
    """Which runs of ``comparison`` were computed here and which were read (shipped with
    the zoo, or cached), by entry, e.g. ``runs computed: backscatter (eddy-128-32, ...)``."""
    by_origin: dict[str, dict[str, list[str]]] = {}
    for (entry, bench), result in comparison.results.items():
        by_origin.setdefault(result.origin, {}).setdefault(entry, []).append(bench)
    lines = [f"runs {origin}: " + "; ".join(f"{entry} ({', '.join(benches)})"
                                            for entry, benches in entries.items())
             for origin, entries in sorted(by_origin.items())]
    return "\n".join(lines)


def _main_benchmark(out, figures: bool) -> Comparison:
    names = []
    elsewhere = sorted(set(zoo.names()) - set(default_entries(MAIN_BENCHMARK)))
    if elsewhere:
        print(f"qgzoo demo: leaving out {', '.join(elsewhere)}, made at another resolution "
              f"(`qgzoo zoo build NAME` scores an entry on its own)", flush=True)
    for name in default_entries(MAIN_BENCHMARK):
        problem = zoo.unavailable(name)
        if problem is None:
            names.append(name)
        else:
            print(f"qgzoo demo: skipping {name}, unavailable here: {problem}", flush=True)
    print(f"qgzoo demo: {len(names)} zoo entries ({', '.join(names)}) on "
          f"{MAIN_BENCHMARK}, and {TRANSFER_BENCHMARK} for transfer", flush=True)
    comparison = compare(names, out=out, figures=figures)
    print()
    print(comparison.table())
    return comparison


def field(out: str | pathlib.Path, *, figures: bool = True) -> Comparison | None:
    """The entries made at 256 -> 64 on the field's benchmark (``FIELD_BENCHMARKS``) under
    Ross et al.'s protocol, as far as the zoo ships their 10-year runs: runs that are not
    shipped take from minutes (closures) to hours (the FullyCNN) each, so the entries
    lacking them are left out, with the command that makes them."""
    missing = [name for name in FIELD_BENCHMARKS if not shipped_path(name, FIELD_PROTOCOL).exists()]
    if missing:
        print(f"qgzoo demo: the field's benchmark {', '.join(missing)} is not shipped "
              f"(`qgzoo zoo benchmark NAME --protocol {FIELD_PROTOCOL}` makes it)", flush=True)
        return None
    benches = [load_benchmark(name, FIELD_PROTOCOL, progress=False) for name in FIELD_BENCHMARKS]
    names, lacking = [], []
    for name in default_entries(benches[0]):
        if zoo.unavailable(name) is not None:
            continue
        entry = resolve(name)
        shipped = all(shipped_run(entry, bench).is_file() for bench in benches)
        (names if shipped else lacking).append(name)
    if lacking:
        print(f"qgzoo demo: leaving out {', '.join(lacking)} on the field's benchmark: their "
              f"runs are not shipped (`qgzoo compare NAME --protocol {FIELD_PROTOCOL} --ship` "
              f"makes them)", flush=True)
    if not names:
        return None
    print(f"qgzoo demo: {len(names)} zoo entries ({', '.join(names)}) on "
          f"{' and '.join(FIELD_BENCHMARKS)}, protocol {FIELD_PROTOCOL}: every run is read "
          f"from the zoo (shipped) or computed now (computed)", flush=True)
    comparison = compare(names, benches, out=out, figures=figures)
    print()
    print(comparison.table())
    return comparison
