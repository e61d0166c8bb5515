"""nnexp.nn — a small neural-network library in NumPy, one concept per file.

module (Parameter, Module, Sequential) · layers (Dense, Dropout, BatchNorm1d) · residual (Skip,
Residual: skip connections) · activations ·
losses (fused with the output nonlinearity) · init · optim · gradients (L2, clipping, norms) ·
schedules · stats · gradcheck · mlp (builder). Imports NumPy only.
"""

from nnexp.nn.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    Activation,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Tanh,
    make_activation,
    sigmoid,
)
from nnexp.nn.flat import flat_view, pack
from nnexp.nn.gradcheck import gradcheck
from nnexp.nn.gradients import (
    add_l2_grad,
    clip_by_global_norm,
    clip_by_value,
    global_norm,
    grad_norms,
    l2_penalty,
    param_norms,
)
from nnexp.nn.init import INITIALIZERS, initialize
from nnexp.nn.layers import BatchNorm1d, Dense, Dropout
from nnexp.nn.losses import LOSSES, MSE, Loss, SigmoidBCE, SoftmaxCrossEntropy
from nnexp.nn.mlp import mlp
from nnexp.nn.module import Module, Parameter, Sequential
from nnexp.nn.optim import OPTIMIZERS, SGD, Adam, AdamW, Optimizer, RMSprop
from nnexp.nn.residual import Residual, Skip
from nnexp.nn.schedules import SCHEDULES, Schedule
from nnexp.nn.stats import StepStats

__all__ = [
    "ACTIVATIONS",
    "ELU",
    "GELU",
    "INITIALIZERS",
    "LOSSES",
    "MSE",
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Activation",
    "Adam",
    "AdamW",
    "BatchNorm1d",
    "Dense",
    "Dropout",
    "Identity",
    "LeakyReLU",
    "Loss",
    "Module",
    "Optimizer",
    "Parameter",
    "RMSprop",
    "ReLU",
    "Residual",
    "Schedule",
    "Sequential",
    "Sigmoid",
    "SigmoidBCE",
    "Skip",
    "SoftmaxCrossEntropy",
    "StepStats",
    "Tanh",
    "add_l2_grad",
    "clip_by_global_norm",
    "clip_by_value",
    "flat_view",
    "global_norm",
    "grad_norms",
    "gradcheck",
    "initialize",
    "l2_penalty",
    "make_activation",
    "mlp",
    "pack",
    "param_norms",
    "sigmoid",
]
