"""Optimizers from optax, declared by spec."""

from __future__ import annotations

from typing import Literal

import optax
from pydantic import Field, model_validator

from qgzoo.core.spec import FrozenSpec


class OptimizerSpec(FrozenSpec):
    """An optax optimizer with a learning-rate schedule and optional clipping."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, description="peak learning rate")
    schedule: Literal["constant", "cosine", "warmup_cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps (warmup_cosine)")
    end_factor: float = Field(0.0, ge=0, le=1, description="final lr / peak lr (cosine)")
    weight_decay: float = Field(1e-4, ge=0, description="decoupled weight decay (adamw)")
    momentum: float | None = Field(None, ge=0, lt=1, description="momentum (sgd)")
    clip_norm: float | None = Field(None, gt=0, description="global gradient-norm clip")

    @model_validator(mode="after")
    def _check(self):
        if self.warmup_steps and self.schedule != "warmup_cosine":
            raise ValueError("warmup_steps needs schedule='warmup_cosine'")
        return self

    def learning_rate_schedule(self, total_steps: int) -> optax.Schedule:
        """The learning rate at each of ``total_steps`` updates."""
        steps = max(total_steps, 1)
        if self.schedule == "constant":
            return optax.constant_schedule(self.learning_rate)
        if self.schedule == "cosine":
            return optax.cosine_decay_schedule(self.learning_rate, steps, alpha=self.end_factor)
        return optax.warmup_cosine_decay_schedule(
            0.0, self.learning_rate, min(self.warmup_steps, steps - 1), steps,
            end_value=self.end_factor * self.learning_rate)

    def transformation(self, total_steps: int) -> optax.GradientTransformation:
        """The optax optimizer for a training of ``total_steps`` updates."""
        lr = self.learning_rate_schedule(total_steps)
        if self.name == "adam":
            opt = optax.adam(lr)
        elif self.name == "adamw":
            opt = optax.adamw(lr, weight_decay=self.weight_decay)
        else:
            opt = optax.sgd(lr, momentum=self.momentum)
        if self.clip_norm is not None:
            opt = optax.chain(optax.clip_by_global_norm(self.clip_norm), opt)
        return opt
