"""The main job: compare the shipped zoo on the shipped references and write the report."""

from __future__ import annotations

import pathlib
import time

from qgzoo import compare, zoo


def main(out: str | pathlib.Path = "runs/demo", *, figures: bool = True) -> compare.Comparison:
    """Compare every zoo entry on the eddy reference and the jet (transfer); print the leaderboard."""
    start = time.perf_counter()
    names = zoo.names()
    print(f"qgzoo demo: {len(names)} zoo entries ({', '.join(names)}) on "
          f"{compare.MAIN_BENCHMARK}, and {compare.TRANSFER_BENCHMARK} for transfer", flush=True)
    comparison = compare.compare(names, out=out, figures=figures)
    print()
    print(comparison.table())
    print(f"\nReport, figures, CSV and JSON in {out} ({time.perf_counter() - start:.0f} s).")
    return comparison
