"""APG: the accelerated proximal gradient of Sparse Structure Selection (SSS).

Huang & Wang, "Data-Driven Sparse Structure Selection for Deep Neural Networks", ECCV 2018
(arXiv:1707.01213). Gates (per-channel or per-block scales) get an L1 penalty ``gamma*|w|``
solved by a proximal step instead of a subgradient, so small gates land exactly on zero.
With the paper's reparametrization (the stored parameter is the look-ahead point), one step
for gradient ``g`` at learning rate ``lr`` and momentum ``mu`` is::

    z = S(w - lr*g, lr*gamma)       S(x, a) = sign(x) * max(|x| - a, 0)   (soft threshold)
    v = z - w + mu*v                (v starts at 0)
    w = max(0, z + mu*v)            (non-negative projection; ``nonnegative=False`` skips it)

No weight decay is applied to gates. The lr of each param group can be scheduled like any
optimizer's (the training loop sets it every epoch).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from ..errors import TrainingError


class APG(Optimizer):
    """Sparse Structure Selection's APG (Huang & Wang, ECCV 2018) for gate parameters.

    Per step, with ``S(x, a) = sign(x) * max(|x| - a, 0)`` and state ``v`` starting at 0::

        z = S(w - lr*g, lr*gamma);  v = z - w + mu*v;  w = max(0, z + mu*v)

    Args: ``lr`` learning rate, ``gamma`` L1 weight, ``momentum`` mu, ``nonnegative``
    (apply the final ``max(0, .)``). No weight decay.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        gamma: float = 0.0,
        momentum: float = 0.9,
        nonnegative: bool = True,
    ) -> None:
        if lr < 0.0:
            raise TrainingError(f"APG: invalid learning rate {lr}")
        if gamma < 0.0:
            raise TrainingError(f"APG: invalid L1 weight gamma {gamma}")
        if not 0.0 <= momentum < 1.0:
            raise TrainingError(f"APG: momentum must be in [0, 1), got {momentum}")
        defaults = dict(lr=lr, gamma=gamma, momentum=momentum, nonnegative=nonnegative)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One APG update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("APG does not support sparse gradients")
            grads = [p.grad for p in params]
            velocities = []
            for p in params:
                state = self.state[p]
                if "v" not in state:
                    state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocities.append(state["v"])
            lr, mu = group["lr"], group["momentum"]
            threshold = lr * group["gamma"]
            # z = S(w - lr*g, lr*gamma), written as x - clamp(x, -a, a): exact zeros inside [-a, a]
            z = torch._foreach_add(params, grads, alpha=-lr)
            if threshold > 0.0:
                clipped = torch._foreach_clamp_max(torch._foreach_clamp_min(z, -threshold), threshold)
                torch._foreach_sub_(z, clipped)
            # v = z - w + mu*v
            torch._foreach_mul_(velocities, mu)
            torch._foreach_add_(velocities, torch._foreach_sub(z, params))
            # w = max(0, z + mu*v)
            torch._foreach_add_(z, torch._foreach_mul(velocities, mu))
            if group["nonnegative"]:
                torch._foreach_clamp_min_(z, 0.0)
            torch._foreach_copy_(params, z)
        return loss
