"""Evaluation of generative models: the paper's Parzen protocol and metrics beyond it."""

from gmmn.evaluate.parzen import (
    parzen_log_densities,
    parzen_log_likelihood,
    parzen_validation_curve,
    select_parzen_sigma,
)
from gmmn.evaluate.protocol import (
    GAN_SIGMAS,
    MNIST_SIGMAS,
    TFD_SIGMAS,
    ParzenResult,
    parzen_protocol,
)

__all__ = [
    "GAN_SIGMAS",
    "MNIST_SIGMAS",
    "TFD_SIGMAS",
    "ParzenResult",
    "parzen_log_densities",
    "parzen_log_likelihood",
    "parzen_protocol",
    "parzen_validation_curve",
    "select_parzen_sigma",
]
