"""Evaluation of generative models: the paper's Parzen protocol and metrics beyond it."""

from gmmn.evaluate.metrics import (
    class_coverage,
    frechet_distance,
    kernel_inception_distance,
    nearest_neighbours,
    precision_recall,
)
from gmmn.evaluate.protocol import (
    GAN_SIGMAS,
    MNIST_SIGMAS,
    TFD_SIGMAS,
    ParzenResult,
    choose_on_validation,
    parzen_protocol,
)
from gmmn.evaluate.report import METRICS, evaluate_run
from gmmn.parzen import (
    parzen_log_densities,
    parzen_log_likelihood,
    parzen_validation_curve,
    select_parzen_sigma,
)

__all__ = [
    "GAN_SIGMAS",
    "METRICS",
    "MNIST_SIGMAS",
    "TFD_SIGMAS",
    "ParzenResult",
    "choose_on_validation",
    "class_coverage",
    "evaluate_run",
    "frechet_distance",
    "kernel_inception_distance",
    "nearest_neighbours",
    "parzen_log_densities",
    "parzen_log_likelihood",
    "parzen_protocol",
    "parzen_validation_curve",
    "precision_recall",
    "select_parzen_sigma",
]
