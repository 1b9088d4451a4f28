"""Learning rate as a pure function of the step: resuming needs no scheduler state."""

from __future__ import annotations

import math

from openrecipe.train.config import ScheduleSettings


def warmup_steps(settings: ScheduleSettings, total_steps: int) -> int:
    return settings.warmup_steps or int(settings.warmup_ratio * total_steps)


def lr_at(step: int, peak: float, total_steps: int, settings: ScheduleSettings) -> float:
    """LR for optimizer step `step` (0-based) of `total_steps`."""
    warm = warmup_steps(settings, total_steps)
    if warm and step < warm:
        return peak * (step + 1) / warm
    if settings.kind == "constant":
        return peak
    span = max(1, total_steps - warm)
    progress = min(1.0, (step - warm) / span)
    floor = peak * settings.min_lr_ratio
    if settings.kind == "linear":
        return floor + (peak - floor) * (1.0 - progress)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
