"""Programmable variational inference: objectives as programs, a gradient estimator per
random choice, guides, SVI."""

from ppl.vi.program import (
    Draw,
    Objective,
    draw,
    init_params,
    logmeanexp,
    mean,
    objective,
    particles,
    score,
)

__all__ = [
    "Draw", "Objective", "draw", "init_params", "logmeanexp", "mean", "objective",
    "particles", "score",
]  # fmt: skip
