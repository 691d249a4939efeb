"""Posterior summaries: rank-normalised bulk/tail ESS and split R-hat (Vehtari et al. 2021).

The effective sample size follows Stan (and ArviZ, and the `posterior` R package)
to the letter: Geyer's initial positive sequence with Stan's last-pair
correction, the monotone sequence, and the cap ESS <= S·log10(S). NumPyro's
`effective_sample_size` drops the correction, which shifts ESS by a few percent,
so only its autocovariance is reused here.
"""

import numpy as np
from numpyro.diagnostics import autocovariance, gelman_rubin
from scipy import special, stats

__all__ = [
    "ess", "ess_mean", "ess_bulk", "ess_tail", "r_hat", "rank_diagnostics", "Summary", "summarize",
]  # fmt: skip

QUANTILES = (0.05, 0.5, 0.95)
COLUMNS = ("mean", "sd", "5%", "50%", "95%", "ess_bulk", "ess_tail", "r_hat")


def _split(x):
    """(chains, draws) -> (2 * chains, draws // 2): halves of each chain as chains."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]])


def _z_scale(x):
    ranks = stats.rankdata(x, method="average").reshape(x.shape)
    return special.ndtri((ranks - 0.375) / (x.size + 0.25))  # norm.ppf, without its overhead


def _invalid(x):
    return x.shape[1] < 4 or not np.all(np.isfinite(x)) or np.ptp(x) == 0


def ess(x):
    """Stan's effective sample size of draws shaped (chains, draws), no splitting."""
    x = np.asarray(x, dtype=np.float64)
    if _invalid(x):
        return np.nan
    m, n = x.shape
    acov = autocovariance(x, axis=1, bias=True)
    mean_var = acov[:, 0].mean() * n / (n - 1)
    var_plus = mean_var * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    # Geyer's initial positive sequence over pairs (rho[t+1], rho[t+2]).
    rho_hat = np.zeros(n)
    rho_hat[0], rho_hat[1] = 1.0, rho[1]
    even, odd, t = 1.0, rho[1], 1
    while t < n - 3 and even + odd > 0:
        even, odd = rho[t + 1], rho[t + 2]
        if even + odd >= 0:
            rho_hat[t + 1], rho_hat[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:  # Stan's correction: keep the last positive even lag
        rho_hat[max_t + 1] = even
    # Geyer's initial monotone sequence.
    for t in range(1, max_t - 1, 2):
        if rho_hat[t + 1] + rho_hat[t + 2] > rho_hat[t - 1] + rho_hat[t]:
            rho_hat[t + 1] = rho_hat[t + 2] = (rho_hat[t - 1] + rho_hat[t]) / 2
    tau = -1.0 + 2.0 * rho_hat[: max_t + 1].sum() + rho_hat[max_t + 1]
    tau = max(tau, 1.0 / np.log10(m * n))
    return float(m * n / tau)


def ess_mean(x):
    """Split-chain ESS of the draws themselves: the one that sets the MC error of the mean."""
    return ess(_split(np.asarray(x, dtype=np.float64)))


def ess_bulk(x):
    """Bulk effective sample size of draws shaped (chains, draws)."""
    x = np.asarray(x, dtype=np.float64)
    if _invalid(x):
        return np.nan
    return ess(_z_scale(_split(x)))


def ess_tail(x):
    """Tail ESS: the smaller ESS of the 5% and 95% quantile indicators (a constant
    indicator, as for a discrete site at its extreme value, has none and is skipped)."""
    x = np.asarray(x, dtype=np.float64)
    if _invalid(x):
        return np.nan
    q05, q95 = np.quantile(x, [0.05, 0.95])
    return float(np.fmin(ess(_split(x <= q05)), ess(_split(x <= q95))))


def r_hat(x):
    """Rank-normalised split R-hat, the larger of the bulk and folded versions.

    The folding is about the median of all draws, as in Vehtari et al. (2021)
    and Stan's `posterior` package (ArviZ folds the split chains, which drops the
    middle draw when the number of draws is odd).
    """
    x = np.asarray(x, dtype=np.float64)
    if _invalid(x):
        return np.nan
    return _r_hat(x, _z_scale(_split(x)))


def _r_hat(x, z):
    """`r_hat` given `z`, the z-scaled ranks of the split draws of `x`."""
    folded = np.abs(x - np.median(x))
    return float(max(gelman_rubin(z), gelman_rubin(_z_scale(_split(folded)))))


def rank_diagnostics(x):
    """(r_hat, ess_bulk, ess_tail) of draws (chains, draws), ranking the draws once for
    the first two (ranking is most of their cost)."""
    x = np.asarray(x, dtype=np.float64)
    if _invalid(x):
        return np.nan, np.nan, np.nan
    z = _z_scale(_split(x))
    return _r_hat(x, z), ess(z), ess_tail(x)


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
    rhat, bulk, tail = rank_diagnostics(x)
    return {
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if x.size > 1 else np.nan,
        "5%": float(q[0]),
        "50%": float(q[1]),
        "95%": float(q[2]),
        "ess_bulk": bulk,
        "ess_tail": tail,
        "r_hat": rhat,
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
