"""Posterior summaries: rank-normalised bulk/tail ESS and split R-hat (Vehtari et al. 2021).

The effective sample size follows Stan (and ArviZ, and the `posterior` R package)
to the letter: Geyer's initial positive sequence with Stan's last-pair
correction, the monotone sequence, and the cap ESS <= S·log10(S). NumPyro's
`effective_sample_size` drops the correction, which shifts ESS by a few percent,
so only its autocovariance is reused here.
"""

from functools import partial

import numpy as np
from numpyro.diagnostics import autocovariance, gelman_rubin
from scipy import special

__all__ = [
    "ess", "ess_mean", "ess_bulk", "ess_tail", "r_hat", "rank_diagnostics",
    "unranked_diagnostics", "Summary", "summarize", "component_labels",
]  # fmt: skip

QUANTILES = (0.05, 0.5, 0.95)
COLUMNS = ("mean", "sd", "5%", "50%", "95%", "ess_bulk", "ess_tail", "r_hat")


# Every statistic works on draws shaped (..., chains, draws), one value per leading index:
# the diagnostics of many components are computed together, with no Python loop per
# component or per lag.


def _split(x):
    """(..., chains, draws) -> (..., 2 * chains, draws // 2): halves of each chain as chains."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., x.shape[-1] - half :]], axis=-2)


def _average_ranks(x):
    """Ranks 1..n along the last axis, tied values sharing their average rank (as
    `scipy.stats.rankdata(method="average")`, in about half its time): one sort per row,
    then the tie groups of all rows in one flat pass (a row's first value starts a group)."""
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    order = np.argsort(rows, axis=-1)
    ordered = np.take_along_axis(rows, order, axis=-1)
    starts_group = np.empty(ordered.shape, bool)
    starts_group[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts_group[:, 1:])
    first = np.flatnonzero(starts_group)  # flat positions where a group starts
    end = np.append(first[1:], starts_group.size)  # one past its last
    average = 0.5 * (first + end + 1) - (first // n) * n  # 1-based, within the row
    ranks = np.empty(rows.size)
    ranks[(order + n * np.arange(len(rows))[:, None]).ravel()] = np.repeat(average, end - first)
    return ranks.reshape(x.shape)


def _z_scale(x):
    """Normal scores of the ranks (ties averaged) over each leading index's draws."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    ranks = _average_ranks(flat).reshape(x.shape)
    return special.ndtri((ranks - 0.375) / (flat.shape[-1] + 0.25))  # norm.ppf, less overhead


def _valid(x):
    """Per leading index: enough draws to split, all finite, not constant."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    if x.shape[-1] < 4:
        return np.zeros(flat.shape[:-1], bool)
    return np.all(np.isfinite(flat), axis=-1) & (np.ptp(flat, axis=-1) > 0)


def _ess(x):
    """Stan's effective sample size, no splitting. Geyer's initial positive sequence over
    the pairs (rho[2j], rho[2j+1]) stops at the first pair with a non-positive sum (or
    the end of the draws); Stan keeps that pair's even lag where it is positive; the
    monotone sequence is the running minimum of the pair sums before it."""
    m, n = x.shape[-2:]
    if n < 4:
        return np.full(x.shape[:-2], np.nan)
    acov = autocovariance(x, axis=-1, bias=True)
    mean_var = acov[..., 0].mean(axis=-1) * n / (n - 1)
    between = x.mean(axis=-1).var(axis=-1, ddof=1) if m > 1 else 0.0
    var_plus = mean_var * (n - 1) / n + between
    rho = 1.0 - (mean_var[..., None] - acov.mean(axis=-2)) / var_plus[..., None]
    rho[..., 0] = 1.0
    num_steps = max(0, -(-(n - 2) // 2) - 1)  # pairs j = 1, 2, ... with 2j - 1 < n - 3
    pair_sums = rho[..., : 2 * num_steps + 2].reshape(rho.shape[:-1] + (-1, 2)).sum(axis=-1)
    steps = np.sum(np.cumprod(pair_sums[..., :num_steps] > 0, axis=-1), axis=-1)  # J
    even = np.take_along_axis(rho, (2 * steps)[..., None], axis=-1)[..., 0]
    last_sum = np.take_along_axis(pair_sums, steps[..., None], axis=-1)[..., 0]
    last = np.where((last_sum >= 0) | (even > 0), even, 0.0)  # rho_hat[2J]
    monotone = np.minimum.accumulate(pair_sums, axis=-1)
    kept = np.arange(pair_sums.shape[-1]) < steps[..., None]
    tau = -1.0 + 2.0 * np.sum(np.where(kept, monotone, 0.0), axis=-1) + last
    ess = m * n / np.maximum(tau, 1.0 / np.log10(m * n))
    return np.where(_valid(x), ess, np.nan)  # e.g. a constant quantile indicator: none


def _batch(statistic, x, trailing=()):
    """`statistic` of draws (..., chains, draws) as float64 (its values of shape
    `trailing` per leading index), NaN where the draws are invalid."""
    x = np.asarray(x, dtype=np.float64)
    valid = _valid(x)
    out = np.full(valid.shape + trailing, np.nan)
    if np.any(valid):
        with np.errstate(all="ignore"):
            out[valid] = statistic(x[valid])
    return out


def _scalar(statistic, x):
    x = np.asarray(x, dtype=np.float64)
    return float(_batch(statistic, x[None])[0])


def _unscaled(x):
    return x


def _tail_indicators(x):
    """The split draws' indicators of the 5% and 95% quantiles, stacked on a first axis."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    quantiles = np.quantile(flat, [0.05, 0.95], axis=-1)[..., None, None]
    return _split((x <= quantiles) * 1.0)


def _tail(x):
    return np.fmin(*_ess(_tail_indicators(x)))


def _r_hat(x, z, scale):
    """Split R-hat, the larger of the bulk and folded versions, given `z` = scale(split
    draws); a NaN one (e.g. constant folds) is skipped."""
    median = np.median(x.reshape(x.shape[:-2] + (-1,)), axis=-1)[..., None, None]
    folded = scale(_split(np.abs(x - median)))
    return np.fmax(_gelman_rubin(z), _gelman_rubin(folded))


def _gelman_rubin(x):
    """NumPyro's R-hat of draws (..., chains, draws)."""
    return gelman_rubin(np.moveaxis(x, (-2, -1), (0, 1)))


def _diagnostics(x, scale):
    """(r_hat, ess_bulk, ess_tail) stacked on a last axis, with draws scaled by `scale`
    (normal scores of ranks, or none) for the first two; the scaling is done once."""
    z = scale(_split(x))
    bulk, q05, q95 = _ess(np.concatenate([z[None], _tail_indicators(x)]))  # one FFT pass
    return np.stack([_r_hat(x, z, scale), bulk, np.fmin(q05, q95)], axis=-1)


def ess(x):
    """Stan's effective sample size of draws shaped (chains, draws), no splitting."""
    return _scalar(_ess, x)


def ess_mean(x):
    """Split-chain ESS of the draws themselves: the one that sets the MC error of the mean."""
    return _scalar(lambda v: _ess(_split(v)), x)


def ess_bulk(x):
    """Bulk effective sample size of draws shaped (chains, draws)."""
    return _scalar(lambda v: _ess(_z_scale(_split(v))), x)


def ess_tail(x):
    """Tail ESS: the smaller ESS of the 5% and 95% quantile indicators (a constant
    indicator, as for a discrete site at its extreme value, has none and is skipped)."""
    return _scalar(_tail, x)


def r_hat(x):
    """Rank-normalised split R-hat, the larger of the bulk and folded versions.

    The folding is about the median of all draws, as in Vehtari et al. (2021)
    and Stan's `posterior` package (ArviZ folds the split chains, which drops the
    middle draw when the number of draws is odd).
    """
    return _scalar(lambda v: _r_hat(v, _z_scale(_split(v)), _z_scale), x)


def rank_diagnostics(x):
    """(r_hat, ess_bulk, ess_tail), each of shape (...), of draws (..., chains, draws):
    many components at once, ranking the draws once for the first two."""
    out = _batch(partial(_diagnostics, scale=_z_scale), x, (3,))
    return out[..., 0], out[..., 1], out[..., 2]


def unranked_diagnostics(x):
    """`rank_diagnostics` without the ranks (sorting is most of its cost): cheap stand-ins
    that find the worst of many components."""
    out = _batch(partial(_diagnostics, scale=_unscaled), x, (3,))
    return out[..., 0], out[..., 1], out[..., 2]


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


def component_labels(name, shape):
    """Names of a site's scalar components: `theta`, `theta[3]`, `L[0,1]`."""
    return [name if not i else f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


def summarize(samples):
    """A `Summary` of every scalar component of `samples` (name -> (chains, draws, ...));
    each site's components get their R-hat and ESS in one vectorised computation."""
    table = Summary()
    for name, value in samples.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.number) and value.dtype != bool:
            continue
        value = value.astype(np.float64)
        components = np.moveaxis(value.reshape(value.shape[:2] + (-1,)), -1, 0)
        rhat, bulk, tail = rank_diagnostics(components)
        flat = components.reshape(len(components), -1)  # (K, chains * draws)
        q = np.quantile(flat, QUANTILES, axis=1)
        mean = flat.mean(axis=1)
        sd = flat.std(axis=1, ddof=1) if flat.shape[1] > 1 else np.full(len(flat), np.nan)
        columns = (mean, sd, *q, bulk, tail, rhat)  # in the order of COLUMNS
        for k, label in enumerate(component_labels(name, value.shape[2:])):
            table[label] = {c: float(v[k]) for c, v in zip(COLUMNS, columns)}
    return table
