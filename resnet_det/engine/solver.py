"""SGD and the learning-rate schedules of pretraining, on detectron2/fvcore's building blocks."""
from __future__ import annotations

import torch
from detectron2.solver.build import get_default_optimizer_params
from detectron2.solver.lr_scheduler import LRMultiplier, WarmupParamScheduler
from fvcore.common.param_scheduler import CosineParamScheduler, MultiStepParamScheduler

from resnet_det.config.pretraining import OPTIMIZERS

__all__ = ["build_optimizer", "build_lr_scheduler"]

def build_optimizer(model, lr, *, momentum=0.9, weight_decay=1e-4, weight_decay_norm=1e-4,
                    nesterov=False, impl="auto", name="SGD") -> torch.optim.Optimizer:
    """SGD with momentum (the paper's), or ``name`` 'AdamW' (``momentum`` is then its beta1);
    norm-layer parameters get ``weight_decay_norm``. ``impl``: 'fused' (one kernel per step,
    CUDA/CPU), 'foreach' (batched), 'for-loop', or 'auto' (fused on CUDA, foreach elsewhere)."""
    params = get_default_optimizer_params(model, base_lr=lr, weight_decay=weight_decay,
                                          weight_decay_norm=weight_decay_norm)
    if impl == "auto":
        impl = "fused" if next(model.parameters()).is_cuda else "foreach"
    flags = {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}
    if impl not in flags:
        raise ValueError(f"unknown SOLVER.OPTIMIZER_IMPL {impl!r}; valid: auto, {', '.join(flags)}")
    if name == "AdamW":
        return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay,
                                 **flags[impl])
    if name != "SGD":
        raise ValueError(f"unknown SOLVER.OPTIMIZER {name!r}; valid: {', '.join(OPTIMIZERS)}")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                           nesterov=nesterov, **flags[impl])


def build_lr_scheduler(optimizer, max_iter, *, schedule="step", steps=(), gamma=0.1,
                       warmup_iters=0, warmup_factor=0.1):
    """Per-iteration schedule: ``step`` (lr *= ``gamma`` at each iteration in ``steps``, the
    paper's /10 drops) or ``cosine`` (to zero at ``max_iter``), after a linear warm-up of
    ``warmup_iters`` from ``warmup_factor`` x lr."""
    if schedule == "step":
        steps = [s for s in steps if s < max_iter]
        sched = MultiStepParamScheduler([gamma**k for k in range(len(steps) + 1)],
                                        milestones=list(steps) or None, num_updates=max_iter)
    elif schedule == "cosine":
        sched = CosineParamScheduler(1.0, 0.0)
    else:
        raise ValueError(f"unknown SOLVER.SCHEDULE {schedule!r}; valid: step, cosine")
    if warmup_iters > 0:
        sched = WarmupParamScheduler(sched, warmup_factor, min(warmup_iters / max_iter, 1.0),
                                     "linear", rescale_interval=False)
    return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)
