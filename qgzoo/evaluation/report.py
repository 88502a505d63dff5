"""The leaderboard and report of a comparison: terminal and Markdown tables, CSV, JSON.

``write`` puts into one folder: leaderboard.md, leaderboard.csv and
leaderboard.json (rows, costs, every score), scores.csv (the 18 similarity
scores of every entry on every benchmark), the figures (``qgzoo.evaluation.figures``) and
report.md, which shows them all.
"""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np

from qgzoo.core.schema import validate_component
from qgzoo.data.reference import coarsener_name
from qgzoo.evaluation.climate import METRICS
from qgzoo.evaluation.results import BASELINE


def columns(comparison) -> list[tuple[str, str]]:
    """(key, header) of the leaderboard's columns."""
    main, *others = comparison.benchmarks
    columns = [("entry", "entry")]
    if any(len(members) > 1 for members in comparison.groups().values()):
        columns.append(("seeds", "seeds"))
    columns += [("mean", f"mean similarity ({main.name})"),
               ("min", "min"), ("better", "> 0 (of 18)"), ("stable", "stable runs"),
               ("ms_per_step", "ms/step"), ("x_lores", "x no param"),
               ("x_hires", "x high res"), ("r2_upper", "offline R2 upper"),
               ("r2_lower", "offline R2 lower")]
    for other in others:
        columns += [(f"mean_{other.name}", f"mean similarity ({other.name})"),
                    (f"stable_{other.name}", "stable runs")]
    rows = comparison.rows()
    for bench in comparison.benchmarks:
        key = f"published_mean_{bench.name}"
        if any(row.get(key) is not None for row in rows):
            columns.append((key, f"published ({bench.name}; min, > 0)"))
    return columns


def table(comparison, markdown: bool = False) -> str:
    """The leaderboard as aligned text (terminal) or a Markdown table."""
    keys = columns(comparison)
    body = [[_cell(key, row) for key, _ in keys] for row in comparison.rows()]
    headers = [header for _, header in keys]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in body])


def write(comparison, out: str | pathlib.Path, *, figures: bool = True) -> pathlib.Path:
    """Write leaderboard.{md,csv,json}, scores.csv, the figures and report.md to ``out``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = comparison.rows()
    (out / "leaderboard.md").write_text(table(comparison, markdown=True) + "\n")
    (out / "leaderboard.json").write_text(json.dumps(_strict(
        {"benchmarks": [b.name for b in comparison.benchmarks], "held_out_runs": {
            b.name: b.test_runs for b in comparison.benchmarks},
         "ms_per_step": comparison.ms_per_step, "rows": rows,
         "scores": comparison.score_table()}), indent=2, allow_nan=False) + "\n")
    _write_csv(out / "leaderboard.csv", rows)
    _write_csv(out / "scores.csv", comparison.score_table())
    images = {}
    if figures:
        # Here, not at the top: pyplot takes 0.6 s to import, paid only by a report that draws.
        from qgzoo.evaluation import figures as figs
        images = figs.draw_all(comparison, out)
    (out / "report.md").write_text(_report(comparison, images))
    return out / "report.md"


def _cell(key: str, row: dict) -> str:
    """A value as the leaderboard shows it; with a spread over seeds, ``mean +- std``."""
    if row.get(f"{key}_std") is not None:
        return f"{_number(key, row[key], 1)} ± {_number(key, row[f'{key}_std'], 1)}"
    value = row.get(key)
    if key.startswith("published_mean_") and value is not None:
        bench = key[len("published_mean_"):]
        extra = [f"{row[k]:g}" for k in (f"published_min_{bench}", f"published_positive_{bench}")
                 if row.get(k) is not None]
        return f"{value:.2f}" + (f" ({', '.join(extra)})" if extra else "")
    if key == "stable" and row.get("blowup_days") is not None:
        return f"{value} (day {row['blowup_days']:.0f})"
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return _number(key, value)


def _number(key: str, value: float, decimals_of_counts: int = 0) -> str:
    if key in ("better", "seeds"):
        return f"{value:.{decimals_of_counts}f}"
    if key.startswith("x_"):
        return f"{value:.2g}"
    if key == "ms_per_step":
        return f"{value:.3g}"
    # A blown-up entry's offline R^2 can be -1e58: keep the column narrow.
    return f"{value:.2f}" if abs(value) < 1e4 else f"{value:.1e}"


def _strict(value):
    """``value`` with numpy types as Python ones and non-finite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _write_csv(path: pathlib.Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        # Rows of groups have more columns (spreads, seeds) than rows of single entries.
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)


def _report(comparison, images: dict[str, str]) -> str:
    main = comparison.benchmarks[0]
    lines = ["# qgzoo comparison", "",
             f"Reference `{main.name}` ({main.reference.config}, {main.reference.hires_nx} -> "
             f"{main.reference.lores_nx}, {coarsener_name(validate_component('coarsener', main.coarsener))}); "
             f"{main.describe_runs()}.", "",
             f"Cost per step: high resolution {comparison.ms_per_step['high resolution']:.3g} ms, "
             f"no parameterization {comparison.ms_per_step[BASELINE]:.3g} ms.", "",
             comparison.table(markdown=True), "",
             "Similarity = 1 - d(entry, high res) / d(no parameterization, high res): 1 matches "
             "the high-resolution climate, 0 is no better than no parameterization.", ""]
    for title, path in images.items():
        lines += [f"## {title}", "", f"![{title}]({path})", ""]
    for bench in comparison.benchmarks:
        lines += [f"## Similarity scores, {bench.name}", "",
                  "| entry | " + " | ".join(METRICS) + " |",
                  "|---|" + "---:|" * len(METRICS)]
        for entry in comparison.entries:
            scores = comparison.scores(entry.name, bench.name)
            lines.append(f"| {entry.name} | " + " | ".join(
                f"{scores[m]:.2f}" for m in METRICS) + " |")
        lines.append("")
    return "\n".join(lines)
