"""Reference data: an ensemble of spun-up high-resolution runs, coarsened.

``ReferenceSpec`` declares the ensemble (``REFERENCES`` names the presets);
``qgzoo.data.store`` builds it into a zarr store; ``ReferenceData`` reads
stores (qgzoo's own, or any laid out like pyqg's datasets: variables q, u, v, q_forcing_total, q_subgrid_forcing with dims
``run, time, lev, y, x``) and serves windows of consecutive samples by run,
without loading the whole store.
"""

from __future__ import annotations

import math
from typing import Literal

import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_serializer, model_validator

from qgzoo.core.fields import EXTRA_FIELDS, FIELDS, FieldStats
from qgzoo.core.schema import Component
from qgzoo.core.spec import CoarsenerSpec, FrozenSpec
from qgzoo.physics import qg

PHYSICS_NAMES = ("beta", "rd", "delta", "H1", "U1", "U2", "rek", "L", "filterfac")
#: Parameters that must be positive (lengths, the layer-depth ratio, the filter) or
#: not negative (the bottom drag), besides being finite like all of them.
POSITIVE = ("rd", "delta", "H1", "L", "filterfac")
NON_NEGATIVE = ("rek",)


class ReferenceSpec(FrozenSpec):
    """A QG configuration and an ensemble of high-resolution AB3 runs sampled after spin-up.

    Runs are split by index: the first are training runs, then ``n_val_runs``
    validation runs, then the last ``n_test_runs`` held out for testing.
    """

    config: Literal["eddy", "jet"] = Field("eddy", description="physics preset (SCIENCE.md)")
    physics: dict[str, float] = Field(
        default_factory=dict,
        description="overrides of the preset's parameters, SI units (beta 1/(m s), rd m, ...)")
    hires_nx: int = Field(128, ge=16, le=1024, description="high-resolution grid points per side")
    lores_nx: int = Field(32, ge=8, description="low-resolution grid points per side")
    coarseners: tuple[Component("coarsener"), ...] = Field(
        (), description="coarseners applied to every sample, besides the experiment's own")
    dt: float = Field(3600.0, gt=0, description="high-resolution AB3 time step, seconds")
    precision: Literal["single", "double"] = "double"
    n_runs: int = Field(8, ge=2, description="ensemble size (all splits)")
    n_val_runs: int = Field(0, ge=0, description="runs for validation")
    n_test_runs: int = Field(2, ge=1, description="runs held out for testing")
    spinup_steps: int = Field(17520, ge=0, description="steps discarded before sampling")
    n_samples: int = Field(400, ge=2, description="samples kept per run")
    sample_interval: int = Field(1, ge=1, description="high-resolution steps between samples")
    n_hires_snapshots: int = Field(
        10, ge=0, description="last samples whose high-res q is stored, for online metrics")
    extra_fields: tuple[Literal[EXTRA_FIELDS], ...] = Field(
        (), description="fields stored besides the q forcings (core.fields.EXTRA_FIELDS): "
                        "the subgrid fluxes of q, the momentum subgrid forcings")
    seed: int = 0

    @model_serializer(mode="wrap")
    def _without_empty_extras(self, handler):
        # Specs (and the stores they name) written before extra_fields existed keep
        # their JSON and their content hash.
        data = handler(self)
        if not self.extra_fields:
            data.pop("extra_fields", None)
        return data

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields of each coarsener's samples in the store."""
        return FIELDS + self.extra_fields

    @model_validator(mode="after")
    def _check(self):
        if len(set(self.extra_fields)) != len(self.extra_fields):
            raise ValueError(f"extra_fields must not repeat: {self.extra_fields}")
        unknown = set(self.physics) - set(PHYSICS_NAMES)
        if unknown:
            raise ValueError(f"physics: unknown parameters {sorted(unknown)}; "
                             f"allowed: {list(PHYSICS_NAMES)}")
        for name, value in self.physical_parameters.items():
            if not math.isfinite(value):
                raise ValueError(f"physics.{name} must be finite, got {value}")
            if (name in POSITIVE and value <= 0) or (name in NON_NEGATIVE and value < 0):
                bound = "positive" if name in POSITIVE else "at least 0"
                raise ValueError(f"physics.{name} must be {bound}, got {value:g}")
        for name in ("hires_nx", "lores_nx"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even, got {getattr(self, name)}")
        if self.lores_nx >= self.hires_nx:
            raise ValueError(f"lores_nx ({self.lores_nx}) must be smaller than "
                             f"hires_nx ({self.hires_nx})")
        if self.hires_nx % self.lores_nx:
            raise ValueError(f"lores_nx ({self.lores_nx}) must divide hires_nx ({self.hires_nx})")
        if self.n_test_runs + self.n_val_runs >= self.n_runs:
            raise ValueError(f"n_test_runs ({self.n_test_runs}) and n_val_runs "
                             f"({self.n_val_runs}) must leave training runs out of n_runs "
                             f"({self.n_runs})")
        if self.n_hires_snapshots > self.n_samples:
            raise ValueError(f"n_hires_snapshots ({self.n_hires_snapshots}) exceeds "
                             f"n_samples ({self.n_samples})")
        return self

    @property
    def physical_parameters(self) -> dict[str, float]:
        return {**qg.PRESETS[self.config], **self.physics}

    def hires_model(self):
        return qg.make_model(self.physical_parameters, self.hires_nx, self.precision)

    def lores_model(self):
        return qg.make_model(self.physical_parameters, self.lores_nx, self.precision)

    @property
    def sample_seconds(self) -> float:
        """Time between samples, in seconds."""
        return self.sample_interval * self.dt

    def with_coarsener(self, coarsener: CoarsenerSpec) -> "ReferenceSpec":
        """This spec with ``coarsener`` among its coarseners (first, if it was missing)."""
        if coarsener in self.coarseners:
            return self
        return self.model_copy(update={"coarseners": (coarsener, *self.coarseners)})

    def split_runs(self) -> dict[str, range]:
        """Run indices of each split."""
        n_train = self.n_runs - self.n_val_runs - self.n_test_runs
        return {"train": range(0, n_train),
                "validation": range(n_train, n_train + self.n_val_runs),
                "test": range(self.n_runs - self.n_test_runs, self.n_runs)}


def coarsener_name(coarsener: CoarsenerSpec) -> str:
    """Group name of a coarsener's data in a store: its kind, plus its options if any."""
    options = {k: v for k, v in coarsener.model_dump(mode="json").items() if k != "kind"}
    if not options:
        return coarsener.kind
    return coarsener.kind + "".join(f"-{k}={v}" for k, v in sorted(options.items()))


class _Runs:
    """A read-only view of the runs [start, stop) of an array shaped (run, time, ...)."""

    def __init__(self, source, start: int, stop: int):
        self.source, self.start, self.stop = source, start, stop
        self.shape = (stop - start, *source.shape[1:])

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        run = key[0]
        if isinstance(run, slice):
            begin, end, step = run.indices(self.shape[0])
            run = slice(self.start + begin, self.start + end, step)
        else:
            run = self.start + range(self.shape[0])[run]
        return np.asarray(self.source[(run, *key[1:])])

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)


class ReferenceData:
    """Coarsened samples of some runs: each field is (run, time, nz, n, n).

    Fields may be numpy arrays (in memory) or lazily read arrays (zarr,
    xarray): only the windows asked for are read.
    """

    def __init__(self, fields: dict, n_test_runs: int, n_val_runs: int = 0):
        missing = [name for name in FIELDS if name not in fields]
        if missing:
            raise ValueError(f"reference data lacks fields {missing}")
        names = FIELDS + tuple(name for name in EXTRA_FIELDS if name in fields)
        shapes = {name: tuple(fields[name].shape) for name in names}
        if len(set(shapes.values())) != 1 or len(shapes["q"]) != 5:
            raise ValueError(f"fields must share one (run, time, lev, y, x) shape: {shapes}")
        self.fields = {name: fields[name] for name in names}
        self.n_test_runs, self.n_val_runs = n_test_runs, n_val_runs

    @property
    def n_runs(self) -> int:
        return self.fields["q"].shape[0]

    @property
    def n_samples(self) -> int:
        return self.fields["q"].shape[1]

    def split(self, name: Literal["train", "validation", "test"]) -> "ReferenceData":
        """The runs of one split (views: nothing is copied or read)."""
        n_train = self.n_runs - self.n_val_runs - self.n_test_runs
        start, stop = {"train": (0, n_train),
                       "validation": (n_train, n_train + self.n_val_runs),
                       "test": (self.n_runs - self.n_test_runs, self.n_runs)}[name]
        fields = {k: v[start:stop] if isinstance(v, np.ndarray) else _Runs(v, start, stop)
                  for k, v in self.fields.items()}
        return ReferenceData(fields, self.n_test_runs if name == "test" else 0,
                             self.n_val_runs if name == "validation" else 0)

    def windows(self, name: str, runs, starts, length: int) -> np.ndarray:
        """Field ``name`` over windows of ``length`` samples: (n_windows, length, nz, n, n)."""
        source = self.fields[name]
        return np.stack([np.asarray(source[r, s:s + length]) for r, s in zip(runs, starts)])

    def stats(self) -> FieldStats:
        """Per-layer RMS over runs, time and space (means are held at zero), run by run.

        Raises ValueError naming the runs if a field holds non-finite values.
        """
        std = {}
        for name, source in self.fields.items():
            squares = []
            for run in range(self.n_runs):
                values = np.asarray(source[run])
                if not np.isfinite(values).all():
                    bad = [r for r in range(self.n_runs) if not np.isfinite(source[r]).all()]
                    raise ValueError(f"field {name!r} has non-finite values in run(s) {bad}")
                squares.append(np.mean(values**2, axis=(0, 2, 3)))
            std[name] = jnp.asarray(np.sqrt(np.mean(squares, axis=0)), jnp.float64)
        return FieldStats(std)

    @classmethod
    def from_xarray(cls, dataset, n_test_runs: int, n_val_runs: int = 0) -> "ReferenceData":
        """Data from an xarray Dataset in pyqg's layout (dims run, time, lev, y, x)."""
        fields = {}
        for name in FIELDS + tuple(name for name in EXTRA_FIELDS if name in dataset):
            if name not in dataset:
                raise ValueError(f"dataset lacks variable {name!r} (has {sorted(dataset)})")
            variable = dataset[name].transpose("run", "time", "lev", "y", "x").variable
            fields[name] = _Runs(variable, 0, variable.shape[0])
        return cls(fields, n_test_runs, n_val_runs)


#: eddy, 64 -> 16, 4 runs (1 held out), spun up 3 years (kinetic energy has
#: levelled off by then at nx = 64), then 300 hourly samples per run.
SMALL_REFERENCE = dict(hires_nx=64, lores_nx=16, n_runs=4, n_test_runs=1,
                       spinup_steps=3 * 8760, n_samples=300)

#: eddy, 128 -> 32 (Operator1 and Operator2), 8 runs (5 train, 1 validation,
#: 2 test) spun up 3 years, then one year sampled every 12 hours.
EDDY_128_32 = dict(hires_nx=128, lores_nx=32, n_runs=8, n_val_runs=1, n_test_runs=2,
                   spinup_steps=3 * 8760, n_samples=720, sample_interval=12,
                   coarseners=[{"kind": "operator1"}, {"kind": "operator2"}])

#: jet, 128 -> 32, for transfer tests: 4 runs (2 held out) spun up 7 years, as
#: the jet's kinetic energy still grows exponentially after 3 (up to 4 years at
#: nx = 128 before the instability saturates); then one year every 12 hours.
JET_128_32 = {**EDDY_128_32, "config": "jet", "n_runs": 4, "n_val_runs": 0,
              "spinup_steps": 7 * 8760}

#: The field's benchmark (Ross et al. 2023): eddy, 256 -> 64 (Operator1 and
#: Operator2), 8 runs (5 train, 1 validation, 2 test) spun up 5 years, as their
#: statistics are averaged from year 5, then one year sampled every 12 hours.
EDDY_256_64 = {**EDDY_128_32, "hires_nx": 256, "lores_nx": 64, "spinup_steps": 5 * 8760}

#: jet, 256 -> 64, for transfer: 4 runs (2 held out) spun up 7 years (as jet-128-32).
JET_256_64 = {**JET_128_32, "hires_nx": 256, "lores_nx": 64}

#: Reference presets for ``qgzoo data build NAME``, named CONFIG-HIRES-LORES.
REFERENCES = {"eddy-64-16": SMALL_REFERENCE, "eddy-128-32": EDDY_128_32,
              "jet-128-32": JET_128_32, "eddy-256-64": EDDY_256_64, "jet-256-64": JET_256_64}
