"""Evaluation: offline and online metrics, climates, benchmarks, one entry's results,
the comparison of many, its report and figures, and the held-out rollout error."""
