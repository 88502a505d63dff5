"""The Experiment spec: reference data, components, optimizer and training."""

from __future__ import annotations

import json
import pathlib
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from qgzoo.core import files
from qgzoo.core.fields import TARGETS
from qgzoo.core.schema import Component, invalid_spec, json_schema
from qgzoo.core.spec import FrozenSpec
from qgzoo.data.reference import ReferenceSpec
from qgzoo.training.optimizers import OptimizerSpec


class EKISpec(FrozenSpec):
    """Ensemble Kalman inversion against the training data's climate (``training.method =
    "eki"``; ``qgzoo.training.calibration`` says what is run and compared)."""

    unscored_samples: int = Field(0, ge=0, description="pushforward: the first P samples of "
                                                       "a window are run without gradient "
                                                       "and not scored (P < rollout_steps)")
    start_noise: float = Field(0.0, ge=0, description="noise injection: Gaussian noise added "
                                                      "to each window's first state, std / "
                                                      "the layer's rms of q (dimensionless)")
    members: int = Field(16, ge=2, description="ensemble size J")
    run_days: float = Field(730.0, gt=0, description="length of each member's run from a "
                                                     "coarsened training state, days")
    average_days: float = Field(365.0, gt=0, description="the last days of each run, whose "
                                                         "daily states are averaged")
    prior_std: float = Field(0.5, gt=0, description="std of the initial ensemble around the "
                                                    "initial trainable values (for qgzoo-"
                                                    "physical's constants, log-factors)")
    bands: int = Field(4, ge=1, description="log-spaced wavenumber bands of the kinetic "
                                            "energy observed, per layer")
    block_days: float = Field(90.0, gt=0, description="blocks of the training runs whose "
                                                      "spread is the observables' noise")

    @model_validator(mode="after")
    def _check(self):
        if self.average_days > self.run_days:
            raise ValueError(f"eki.average_days ({self.average_days:g}) must not exceed "
                             f"eki.run_days ({self.run_days:g})")
        return self


class TrainingSpec(FrozenSpec):
    """How long and on what windows to train; rollout_steps = 0 trains offline."""

    steps: int = Field(500, ge=0, description="optimizer updates")
    batch_size: int = Field(8, ge=1, description="windows per update (vmapped)")
    rollout_steps: int = Field(
        10, ge=0, description="samples per rollout window T; 0 fits the forcing (offline)")
    curriculum_start: int | None = Field(
        None, ge=1, description="rollout length at step 0, growing linearly to rollout_steps")
    curriculum_steps: int = Field(0, ge=0, description="updates over which T grows")
    checkpoint_chunk: int = Field(10, ge=1, description="samples per rematerialised chunk")
    time_decay: float = Field(1.0, gt=0, description="weight of a window's sample t relative "
                                                     "to sample t - 1 in the rollout loss "
                                                     "(1: all alike)")
    truncate_every: int = Field(0, ge=0, description="truncated backpropagation: gradients "
                                                     "stop at every K-th sample of a window "
                                                     "(0: through the whole window)")
    unscored_samples: int = Field(0, ge=0, description="pushforward: the first P samples of "
                                                       "a window are run without gradient "
                                                       "and not scored (P < rollout_steps)")
    start_noise: float = Field(0.0, ge=0, description="noise injection: Gaussian noise added "
                                                      "to each window's first state, std / "
                                                      "the layer's rms of q (dimensionless)")
    members: int = Field(1, ge=1, description="rollouts per window, from its first sample, "
                                              "each with its own noise (a stochastic "
                                              "closure's), scored together by the loss "
                                              "(energy_score, crps; others: their mean)")
    checkpoint_every: int = Field(0, ge=0, description="updates between checkpoints (0: none)")
    eval_every: int = Field(
        0, ge=0, description="updates between validation losses (0: none); needs validation runs")
    eval_windows: int = Field(16, ge=1, description="fixed validation windows scored")
    forcing_target: Literal[tuple(TARGETS)] = Field(
        "q_forcing_total", description="what the network predicts and is scaled by "
                                       "(core.fields.TARGETS): a q forcing, the subgrid flux "
                                       "of q (q_subgrid_flux) or the momentum forcing; the "
                                       "last two are trained on q_subgrid_forcing")
    method: Literal["gradient", "least_squares", "eki"] = Field(
        "gradient", description="gradient: optimizer updates; least_squares: the weights of "
                                "a linear closure (kind symbolic) solved in closed form "
                                "on every training sample's forcing (offline; steps unused); "
                                "eki: ensemble Kalman inversion of a few constants against "
                                "the climate of long runs (steps: iterations; loss unused)")
    ridge: float = Field(0.0, ge=0, description="least_squares: ridge penalty on the "
                                                "dimensionless weights")
    train_only: tuple[str, ...] | None = Field(
        None, min_length=1,
        description="glob patterns of the parameter paths to train, e.g. 'core.convs.2.*' "
                    "(a pattern that matches none lists them); the others keep their "
                    "initial values. None trains every weight")
    init_from: str | None = Field(
        None, description="zoo entry or trained folder whose weights and scales start the "
                          "training (same network spec): fine-tuning")
    eki: EKISpec = EKISpec()
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.method in ("least_squares", "eki") and self.rollout_steps:
            raise ValueError(f"method {self.method} does not train on rollout windows: set "
                             "rollout_steps to 0")
        if self.unscored_samples and self.unscored_samples >= (
                self.curriculum_start or self.rollout_steps):
            raise ValueError(f"unscored_samples ({self.unscored_samples}) must be below the "
                             f"shortest rollout ({self.curriculum_start or self.rollout_steps} "
                             "samples)")
        if self.members > 1 and not self.rollout_steps:
            raise ValueError(f"members ({self.members}): an ensemble of rollouts needs "
                             "rollout_steps of at least 1")
        if self.curriculum_start is not None and self.curriculum_start > self.rollout_steps:
            raise ValueError(f"curriculum_start ({self.curriculum_start}) must not exceed "
                             f"rollout_steps ({self.rollout_steps})")
        return self

    @property
    def trains(self) -> bool:
        """Whether training changes any weight (updates, or a least-squares fit)."""
        return self.steps > 0 or self.method == "least_squares"

    def rollout_steps_at(self, step: int) -> int:
        """Rollout length T at optimizer update ``step`` (the curriculum)."""
        if self.curriculum_start is None or step >= self.curriculum_steps:
            return self.rollout_steps
        grow = (self.rollout_steps - self.curriculum_start) * step / self.curriculum_steps
        return self.curriculum_start + int(grow)


class Experiment(FrozenSpec):
    """One experiment: any registered coarsener, network, loss and stepper."""

    reference: ReferenceSpec = ReferenceSpec()
    coarsener: Component("coarsener") = {"kind": "operator1"}
    network: Component("network") = {"kind": "cnn"}
    loss: Component("loss") = {"kind": "state_mse"}
    stepper: Component("stepper") = {"kind": "ab3"}
    optimizer: OptimizerSpec = OptimizerSpec()
    training: TrainingSpec = TrainingSpec()

    model_config = FrozenSpec.model_config | {"validate_default": True}

    @model_validator(mode="after")
    def _check(self):
        if self.training.method == "eki":
            pass  # calibrated against long runs: the loss and its windows are not used
        elif self.loss.needs_rollout() and self.training.rollout_steps == 0:
            raise ValueError(f"training.rollout_steps: loss {self.loss.kind!r} scores rollouts, "
                             "so rollout_steps must be at least 1")
        if not self.loss.needs_rollout() and self.training.rollout_steps > 0:
            raise ValueError(f"training.rollout_steps: loss {self.loss.kind!r} never looks "
                             "at rollouts; set rollout_steps to 0 to train offline")
        window = self.training.rollout_steps + 1
        if window > self.reference.n_samples:
            raise ValueError(f"training.rollout_steps: a window of {window} samples does not "
                             f"fit in runs of reference.n_samples = {self.reference.n_samples}; "
                             f"lower rollout_steps or sample more")
        missing = [name for name in TARGETS[self.training.forcing_target]
                   if name not in self.reference.fields]
        if missing:
            raise ValueError(f"training.forcing_target {self.training.forcing_target!r} is "
                             f"made of fields the reference does not store: add {missing} to "
                             f"reference.extra_fields")
        if self.training.eval_every and not self.reference.n_val_runs:
            raise ValueError("training.eval_every: validation needs reference.n_val_runs >= 1")
        ratio = self.reference.sample_seconds / self.stepper.dt
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"stepper.dt: the sample spacing ({self.reference.sample_seconds} s) must be "
                f"a whole number of low-resolution steps of {self.stepper.dt} s")
        return self

    @property
    def steps_per_sample(self) -> int:
        """Low-resolution steps between two reference samples."""
        return round(self.reference.sample_seconds / self.stepper.dt)

    @classmethod
    def from_file(cls, path: str | pathlib.Path) -> "Experiment":
        """Load an experiment from a JSON file; a file that cannot be read or is not a
        valid experiment is a ``UserError`` naming it and each bad field."""
        data = files.read_json(path, "experiment")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise invalid_spec(str(path), error) from None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2)


def schema() -> dict[str, Any]:
    """JSON Schema of Experiment, with every installed component kind."""
    return json_schema(Experiment)
