"""Log-evidence estimates from independent log weights (one per run, filter or draw)."""

import numpy as np

__all__ = ["log_mean_exp"]


def log_mean_exp(log_w):
    """(log mean exp(log_w), its delta-method standard error from the spread of the
    weights): the log of an average of unbiased evidence estimates. -inf weights count
    as zero; the standard error is NaN with a single weight (the spread needs two)."""
    log_w = np.asarray(log_w, dtype=np.float64).reshape(-1)
    top = np.max(log_w)
    if not np.isfinite(top):
        return float(top), float("nan")
    w = np.exp(log_w - top)
    value = float(top + np.log(np.mean(w)))
    se = float(w.std(ddof=1) / np.sqrt(w.size) / w.mean()) if w.size > 1 else float("nan")
    return value, se
