"""Reading training batches from a reference store: whole chunks kept, against a read per window.

Builds a small store (64 -> 32, 4 runs of 256 hourly samples: 4 chunks of 64
samples per run and field, as the presets' stores are chunked) in a temporary
folder, then draws batches of windows as training does and reads q and
q_forcing_total for each, two ways in the same process:

- qgzoo: ``ReferenceData.windows`` on the opened store, whose arrays decode
  whole chunks and keep them (``qgzoo.data.checksums.CheckedArray``);
- baseline: the same windows read one by one from the zarr arrays, each read
  decoding the chunks it touches (what the store did before).

Prints the time per batch of each, with the cache cold (first pass) and warm.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np

import qgzoo
from qgzoo.data.store import build_store, open_reference


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=1, help="samples per window (T + 1)")
    args = parser.parse_args()
    spec = qgzoo.ReferenceSpec(hires_nx=64, lores_nx=32, n_runs=4, n_test_runs=1,
                               spinup_steps=200, n_samples=256, n_hires_snapshots=0,
                               coarseners=[{"kind": "operator1"}])
    with tempfile.TemporaryDirectory() as folder:
        print("building a 64 -> 32 store of 4 runs x 256 samples ...", flush=True)
        with warnings.catch_warnings():  # a short spin-up: the climate does not matter here
            warnings.simplefilter("ignore")
            build_store(spec, f"{folder}/ref.zarr", progress=False)
        data = open_reference(f"{folder}/ref.zarr")
        arrays = {name: data.fields[name].array for name in ("q", "q_forcing_total")}

        def batches(read):
            rng = np.random.default_rng(0)
            start = time.perf_counter()
            for _ in range(args.batches):
                runs = rng.integers(0, spec.n_runs, args.batch_size)
                starts = rng.integers(0, spec.n_samples - args.length + 1, args.batch_size)
                for name in arrays:
                    read(name, runs, starts)
            return (time.perf_counter() - start) / args.batches * 1e3

        def cached(name, runs, starts):
            data.windows(name, runs, starts, args.length)

        def per_window(name, runs, starts):
            np.stack([np.asarray(arrays[name][r, s:s + args.length])
                      for r, s in zip(runs, starts)])

        baseline = batches(per_window)
        cold = batches(cached)
        warm = batches(cached)
    print(f"per batch of {args.batch_size} windows x 2 fields: read per window "
          f"{baseline:.1f} ms; whole chunks kept {cold:.1f} ms cold, {warm:.2f} ms warm")
    print(f"ratio per-window / kept chunks = {baseline / cold:.1f} cold, {baseline / warm:.0f} warm")


if __name__ == "__main__":
    main()
