"""Losses: the protocol (``base``) and the built-in family, one file each."""

from qgzoo.components.losses.base import AbstractLoss
from qgzoo.components.losses.crps import CRPS, CRPSSpec
from qgzoo.components.losses.energy_score import EnergyScore, EnergyScoreSpec
from qgzoo.components.losses.forcing_mse import ForcingMSE, ForcingMSESpec
from qgzoo.components.losses.state_mse import StateMSE, StateMSESpec
from qgzoo.components.losses.wasserstein import Wasserstein, WassersteinSpec
from qgzoo.components.losses.weighted import Weighted, WeightedSpec, WeightedTerm

__all__ = ["CRPS", "AbstractLoss", "CRPSSpec", "EnergyScore", "EnergyScoreSpec", "ForcingMSE",
           "ForcingMSESpec", "StateMSE", "StateMSESpec", "Wasserstein", "WassersteinSpec",
           "Weighted", "WeightedSpec", "WeightedTerm"]
