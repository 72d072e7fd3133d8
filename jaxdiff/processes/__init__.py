"""Forward processes: the contract shared by objectives, samplers and likelihood."""

from jaxdiff.processes.base import (
    DiagonalGaussian,
    Gaussian,
    Process,
    State,
    batch_sum,
    bcast,
    tree_batch_sum,
)
from jaxdiff.processes.mixture import mixture_log_prob, mixture_score_fn
from jaxdiff.processes.scalar import VE, VP, ScalarLinearProcess, SubVP
from jaxdiff.processes.schedules import CosineSchedule, GeometricSchedule, LinearSchedule

__all__ = [
    "VE",
    "VP",
    "CosineSchedule",
    "DiagonalGaussian",
    "Gaussian",
    "GeometricSchedule",
    "LinearSchedule",
    "Process",
    "ScalarLinearProcess",
    "State",
    "SubVP",
    "batch_sum",
    "bcast",
    "mixture_log_prob",
    "mixture_score_fn",
    "tree_batch_sum",
]
