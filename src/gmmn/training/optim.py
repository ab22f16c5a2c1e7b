"""The optimisers and the (lr, momentum) schedules of the training loop's parts.

Every optimiser offers the small :class:`Optimizer` protocol the loop steps: ``lr`` and
``momentum`` are plain attributes that a :data:`Schedule` sets before each step.

Released-code SGD (Li et al.'s gnumpy code, and our :class:`ReleasedSGD`)::

    v <- m * v - lr * g
    p <- p + v

``torch.optim.SGD`` keeps ``v <- m * v + g; p <- p - lr * v`` instead, which is the same only
while lr is constant: at the GMMN's switch (lr / 10) torch's buffer still carries the old
gradients at the new, smaller lr, the released form at the old lr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import torch


class Optimizer(Protocol):
    """What :func:`gmmn.training.loop.train_loop` needs of an optimiser."""

    lr: float
    momentum: float  # SGD's momentum; Adam's beta1
    params: list[torch.nn.Parameter]

    def zero_grad(self) -> None: ...

    def step(self) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class MomentumSGD:
    """What the SGD variants share: the trainable parameters, one momentum buffer per
    parameter, and the buffers' checkpoint entry under ``STATE_KEY``. Subclasses write
    ``step``; ``lr`` and ``momentum`` are plain attributes that a schedule sets before it.
    """

    STATE_KEY = "buffers"

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float
                 ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr
        self.momentum = momentum
        self.buffers = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return {self.STATE_KEY: [b.detach().cpu().clone() for b in self.buffers]}

    def load_state_dict(self, state: dict) -> None:
        saved = state[self.STATE_KEY]
        if len(saved) != len(self.buffers):
            raise ValueError("momentum buffers do not match the model's parameters")
        for b, s in zip(self.buffers, saved, strict=True):
            b.copy_(s)


class ReleasedSGD(MomentumSGD):
    """SGD with momentum in the released form ``v <- m v - lr g; p <- p + v``."""

    STATE_KEY = "velocity"  # the checkpoints' name for v

    @torch.no_grad()
    def step(self) -> None:
        pairs = [(p, v) for p, v in zip(self.params, self.buffers, strict=True)
                 if p.grad is not None]
        if not pairs:
            return
        params, velocity = [p for p, _ in pairs], [v for _, v in pairs]
        # One fused kernel per operation over all tensors (same arithmetic as a loop).
        torch._foreach_mul_(velocity, self.momentum)
        torch._foreach_add_(velocity, [p.grad for p in params], alpha=-self.lr)
        torch._foreach_add_(params, velocity)


Schedule = Callable[[int], tuple[float, float]]  # iteration t (from 1) -> (lr, momentum)


def gmmn_schedule(*, lr: float, momentum: float, late_from: int, late_lr_factor: float,
                  late_momentum: float) -> Schedule:
    """The paper's GMMN schedule: (lr, m) before iteration ``late_from``, then
    (lr * late_lr_factor, late_momentum) from it on (iterations counted from 1)."""

    def schedule(t: int) -> tuple[float, float]:
        if t >= late_from:
            return lr * late_lr_factor, late_momentum
        return lr, momentum

    return schedule


def stepwise_momentum(*, lr: float, momenta: Sequence[float], starts: Sequence[int]
                      ) -> Schedule:
    """Constant lr; momentum ``momenta[i]`` from iteration ``starts[i]`` on (counted from 1).

    Released fine-tuning: momenta (0, 0.5, 0.9) from (1, 50, 200): 0 for the first 49
    iterations, 0.5 from iteration 50, 0.9 from 200.
    """

    def schedule(t: int) -> tuple[float, float]:
        m = momenta[0]
        for start, value in zip(starts, momenta, strict=True):
            if t >= start:
                m = value
        return lr, m

    return schedule


def constant(*, lr: float, momentum: float) -> Schedule:
    return lambda t: (lr, momentum)


class Adam:
    """``torch.optim.Adam`` behind the loop's optimiser interface (``lr``, ``momentum``,
    ``params``, ``zero_grad``, ``step``, ``state_dict``): ``momentum`` is Adam's beta1, and
    beta2 is :data:`ADAM_BETA2`. The GAN presets' alternative to plain SGD (``--gan-optimizer
    adam``), with the DCGAN settings (Radford et al. 2016): lr 2e-4, beta1 0.5.
    """

    def __init__(self, params, *, lr: float, momentum: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum = lr, momentum
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=(momentum, ADAM_BETA2))

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for group in self.opt.param_groups:
            group["lr"], group["betas"] = self.lr, (self.momentum, ADAM_BETA2)
        self.opt.step()

    def state_dict(self) -> dict:
        state = self.opt.state_dict()["state"]
        return {"state": {int(k): {n: v.detach().cpu().clone() if torch.is_tensor(v) else v
                                   for n, v in s.items()} for k, s in state.items()}}

    def load_state_dict(self, state: dict) -> None:
        full = self.opt.state_dict()
        full["state"] = state["state"]
        self.opt.load_state_dict(full)


ADAM_BETA2 = 0.999
# --gan-optimizer name -> optimiser (gmmn.families.gan.GAN_OPTIMIZERS lists the same names)
OPTIMIZERS = {"sgd": ReleasedSGD, "adam": Adam}


def gan_schedule(*, lr: float, momentum: float, final_momentum: float, momentum_ramp: int,
                 lr_decay: float, min_lr: float) -> Schedule:
    """The GAN paper's MNIST schedule per iteration t (from 1).

    lr_t = max(lr / lr_decay^(t-1), min_lr) (pylearn2's ExponentialDecay);
    m_t = momentum + (final_momentum - momentum) * min(1, (t-1) / momentum_ramp)
    (its MomentumAdjustor, counted in iterations instead of epochs).
    """

    def schedule(t: int) -> tuple[float, float]:
        lr_t = max(lr / lr_decay ** (t - 1), min_lr)
        frac = min(1.0, (t - 1) / momentum_ramp)
        return lr_t, momentum + (final_momentum - momentum) * frac

    return schedule
