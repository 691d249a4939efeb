"""Programmable variational inference: objectives as programs, a gradient estimator per
random choice, guides, SVI."""

from ppl.vi.objectives import (
    DIWHVI,
    ELBO,
    HVI,
    IWAE,
    IWHVI,
    RWS,
    VIMCO,
    Renyi,
    WakeP,
    WakeQ,
)
from ppl.vi.optim import adam
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
from ppl.vi.svi import SVI, EarlyStopping  # registers "vi"

__all__ = [
    "Draw", "Objective", "draw", "init_params", "logmeanexp", "mean", "objective",
    "particles", "score",
    "SVI", "EarlyStopping", "adam",
    "ELBO", "IWAE", "Renyi", "VIMCO", "RWS", "WakeP", "WakeQ", "HVI", "IWHVI", "DIWHVI",
]  # fmt: skip
