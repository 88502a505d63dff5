"""The main job: compare the shipped zoo on the shipped references and write the report."""

from __future__ import annotations

import pathlib
import time

from qgzoo import zoo
from qgzoo.evaluation.comparison import (
    MAIN_BENCHMARK, TRANSFER_BENCHMARK, Comparison, compare, default_entries)


def main(out: str | pathlib.Path = "runs/demo", *, figures: bool = True) -> Comparison:
    """Compare every zoo entry made at the eddy reference's resolution on it and on the jet
    (transfer); print the leaderboard."""
    start = time.perf_counter()
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
    print(f"\nReport, figures, CSV and JSON in {out} ({time.perf_counter() - start:.0f} s).")
    return comparison
