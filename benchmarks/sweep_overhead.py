"""What a sweep on Dask costs per trial, against the same trials run one after another in
this process.

Both sides run the same trials of one sweep (``--seeds`` seeds x 2 learning
rates of a small CNN trained offline on the small test reference, built first
and not timed) through ``qgzoo.sweeps.run_trial``, which trains a trial into
its folder and scores it (validation loss, offline R^2 on the held-out run):

- in process: ``run_trial`` called for each trial in turn, in this process;
- sweep, 1 worker: ``qgzoo.sweep`` on a ``LocalCluster`` of one single-threaded
  worker process: the cluster's start and stop, pickling, scheduling, and a
  fresh process whose JAX compiles everything once more;
- sweep, 2 workers: the same on two worker processes, one per core here.

Each side writes into a fresh folder and is timed by wall clock once, in the
order above, in one run. The overhead per trial is (sweep, 1 worker - in
process) / trials; the speed-up is in process / sweep with 2 workers. Nothing
is asserted.

    .venv/bin/python benchmarks/sweep_overhead.py               # 3 seeds x 2 rates, 50 updates
    .venv/bin/python benchmarks/sweep_overhead.py --seeds 4 --steps 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import qgzoo
from qgzoo.data.reference import SMALL_REFERENCE
from qgzoo.data.store import load_reference
from qgzoo.sweeps import Sweep, run_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="updates per trial")
    args = parser.parse_args()
    spec = Sweep.model_validate({
        "base": {"reference": SMALL_REFERENCE,
                 "network": {"kind": "cnn", "channels": [16, 16], "kernel_sizes": [5, 5, 5]},
                 "loss": {"kind": "forcing_mse"},
                 "training": {"steps": args.steps, "batch_size": 8, "rollout_steps": 0}},
        "axes": {"training.seed": list(range(args.seeds)),
                 "optimizer.learning_rate": [1e-3, 3e-3]}})
    trials = spec.trials()
    load_reference(spec.base.reference, spec.base.coarsener, progress=False)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time()
        for trial in trials:
            record = run_trial(trial.experiment.model_dump(mode="json"),
                               str(Path(tmp) / "here" / trial.name), label=trial.label)
            assert record["status"] == "done", record
        seconds["in process"] = time.perf_counter() - start
        cores = (time.process_time() - cpu) / seconds["in process"]
        for workers in (1, 2):
            start = time.perf_counter()
            result = qgzoo.sweep(spec, Path(tmp) / f"sweep-{workers}", n_workers=workers,
                                 progress=False)
            seconds[f"sweep, {workers} worker{'s' if workers > 1 else ''}"] = \
                time.perf_counter() - start
            assert {row["status"] for row in result.rows()} == {"done"}
    n = len(trials)
    for name, value in seconds.items():
        print(f"{name:18} {value:7.1f} s  {value / n:6.2f} s per trial  "
              f"{value / seconds['in process']:5.2f} x in process")
    print(f"in process: {cores:.2f} cores busy on average (CPU seconds / wall seconds)")
    overhead = (seconds["sweep, 1 worker"] - seconds["in process"]) / n
    print(f"overhead per trial (sweep on 1 worker - in process): {overhead:.2f} s; "
          f"speed-up with 2 workers: {seconds['in process'] / seconds['sweep, 2 workers']:.2f}x")
    print(json.dumps({"trials": n, "steps": args.steps, "seconds": seconds, "cores": cores,
                      "overhead_per_trial_s": overhead}))


if __name__ == "__main__":
    main()
