"""Posterior summaries: rank-normalised bulk/tail ESS and split R-hat (Vehtari et al. 2021).

The effective-sample-size and Gelman–Rubin estimators are NumPyro's; this file
adds the rank normalisation, folding and tail indicators around them.
"""

import numpy as np
from numpyro.diagnostics import effective_sample_size, gelman_rubin
from scipy import stats

__all__ = ["ess_bulk", "ess_tail", "r_hat", "Summary", "summarize"]

QUANTILES = (0.05, 0.5, 0.95)
COLUMNS = ("mean", "sd", "5%", "50%", "95%", "ess_bulk", "ess_tail", "r_hat")


def _split(x):
    """(chains, draws) -> (2 * chains, draws // 2): halves of each chain as chains."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]])


def _z_scale(x):
    ranks = stats.rankdata(x, method="average").reshape(x.shape)
    return stats.norm.ppf((ranks - 0.375) / (x.size + 0.25))


def _ess(x):
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] < 4 or np.ptp(x) == 0:
        return np.nan
    return float(effective_sample_size(x))


def ess_bulk(x):
    """Bulk effective sample size of draws shaped (chains, draws)."""
    return _ess(_z_scale(_split(x)))


def ess_tail(x):
    """Tail ESS: the smaller ESS of the 5% and 95% quantile indicators."""
    q05, q95 = np.quantile(x, [0.05, 0.95])
    return min(_ess(_split(x <= q05)), _ess(_split(x <= q95)))


def r_hat(x):
    """Rank-normalised split R-hat, the larger of the bulk and folded versions."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] < 4 or np.ptp(x) == 0:
        return np.nan
    folded = np.abs(x - np.median(x))
    return float(max(gelman_rubin(_z_scale(_split(x))), gelman_rubin(_z_scale(_split(folded)))))


class Summary(dict):
    """Rows `name[index] -> {statistic: value}`; prints as a table."""

    def __str__(self):
        width = max([len(r) for r in self] + [4])
        head = " " * width + "".join(f"{c:>10}" for c in COLUMNS)
        lines = [head]
        for name, row in self.items():
            cells = "".join(
                f"{row[c]:>10.0f}"
                if c.startswith("ess") and np.isfinite(row[c])
                else f"{row[c]:>10.3f}"
                for c in COLUMNS
            )
            lines.append(f"{name:>{width}}{cells}")
        return "\n".join(lines)

    __repr__ = __str__

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame.from_dict(self, orient="index")


def _row(x):
    q = np.quantile(x, QUANTILES)
    return {
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if x.size > 1 else np.nan,
        "5%": float(q[0]),
        "50%": float(q[1]),
        "95%": float(q[2]),
        "ess_bulk": ess_bulk(x),
        "ess_tail": ess_tail(x),
        "r_hat": r_hat(x),
    }


def summarize(samples):
    """A `Summary` of every scalar component of `samples` (name -> (chains, draws, ...))."""
    table = Summary()
    for name, value in samples.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.number) and value.dtype != bool:
            continue
        value = value.astype(np.float64)
        site_shape = value.shape[2:]
        for idx in np.ndindex(*site_shape):
            label = name if not idx else f"{name}[{','.join(map(str, idx))}]"
            table[label] = _row(value[(slice(None), slice(None), *idx)])
    return table
