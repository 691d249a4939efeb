"""Posterior summaries: rank-normalised bulk/tail ESS and split R-hat (Vehtari et al. 2021).

The effective sample size follows Stan (and ArviZ, and the `posterior` R package)
to the letter: Geyer's initial positive sequence with Stan's last-pair
correction, the monotone sequence, and the cap ESS <= S·log10(S). NumPyro's
`effective_sample_size` drops the correction, which shifts ESS by a few percent, and
its `autocovariance` inverts every chain's spectrum: here the chains' spectra are
averaged first (ESS needs only their mean autocovariance), one inverse per component.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial

import numpy as np
from scipy import special
from scipy.fft import next_fast_len

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


def _sort_rows(x):
    """(order, ordered) of `x` as rows of its last axis: each row's argsort and its values
    in that order."""
    rows = x.reshape(-1, x.shape[-1])
    order = np.argsort(rows, axis=-1)
    return order, np.take_along_axis(rows, order, axis=-1)


def _sorted_ranks(ordered):
    """Ranks 1..n of the values of sorted rows, tied values sharing their average rank;
    one row (1, n) for all when no row has a tie (continuous draws, the common case).
    Tie groups of all rows are found in one flat pass (a row's first value starts one)."""
    n = ordered.shape[-1]
    starts_group = np.empty(ordered.shape, bool)
    starts_group[:, 0] = True
    np.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts_group[:, 1:])
    if starts_group.all():
        return np.arange(1.0, n + 1)[None]
    first = np.flatnonzero(starts_group)  # flat positions where a group starts
    end = np.append(first[1:], starts_group.size)  # one past its last
    average = 0.5 * (first + end + 1) - (first // n) * n  # 1-based, within the row
    return np.repeat(average, end - first).reshape(ordered.shape)


def _unsort(order, values):
    """`values` given in each row's sorted order, put back in the rows' own order."""
    out = np.empty(order.shape)
    np.put_along_axis(out, order, values, axis=-1)
    return out


def _average_ranks(x):
    """Ranks 1..n along the last axis, tied values sharing their average rank (the values
    of `scipy.stats.rankdata(method="average")`, in about a third of its time)."""
    order, ordered = _sort_rows(x)
    return _unsort(order, _sorted_ranks(ordered)).reshape(x.shape)


def _z_scale(x):
    """Normal scores of the ranks (ties averaged) over each leading index's draws; without
    ties every row's scores are the same n values, computed once."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    order, ordered = _sort_rows(flat)
    scores = special.ndtri((_sorted_ranks(ordered) - 0.375) / (flat.shape[-1] + 0.25))
    return _unsort(order, scores).reshape(x.shape)


def _quantiles(x, probs):
    """`np.quantile(draws, probs)` (its default linear method and interpolation formula)
    over each leading index's draws, from one sort: shape (len(probs), ...)."""
    flat = np.sort(x.reshape(x.shape[:-2] + (-1,)), axis=-1)
    index = np.asarray(probs, dtype=np.float64) * (flat.shape[-1] - 1)
    below = np.floor(index).astype(int)
    above = np.minimum(below + 1, flat.shape[-1] - 1)
    t = index - below
    a, b = np.moveaxis(flat[..., below], -1, 0), np.moveaxis(flat[..., above], -1, 0)
    t = t.reshape((-1,) + (1,) * (a.ndim - 1))
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _valid(x):
    """Per leading index: enough draws to split, all finite, not constant."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    if x.shape[-1] < 4:
        return np.zeros(flat.shape[:-1], bool)
    return np.all(np.isfinite(flat), axis=-1) & (np.ptp(flat, axis=-1) > 0)


def _variances(x):
    """(W, var_plus) per leading index of draws (..., chains, draws): the mean within-chain
    variance (ddof=1) and the pooled estimate of the variance, W (n-1)/n + B/n."""
    m, n = x.shape[-2:]
    within = x.var(axis=-1, ddof=1).mean(axis=-1)
    between = x.mean(axis=-1).var(axis=-1, ddof=1) if m > 1 else 0.0
    return within, within * (n - 1) / n + between


def _gelman_rubin(x):
    """R-hat of draws (..., chains, draws), not split (NumPyro's `gelman_rubin`)."""
    within, var_plus = _variances(x)
    return np.sqrt(var_plus / within)


def _mean_autocovariance(x):
    """The chains' biased autocovariances at lags 0..n-1, averaged over chains: (..., n).
    Averaged before the inverse FFT (it is linear), so one inverse transform per index."""
    n = x.shape[-1]
    size = 2 * next_fast_len(n, real=True)  # >= 2n - 1: no circular wrap-around
    # (NumPy's FFT: scipy.fft zero-pads to `size` about 3x slower here)
    spectrum = np.fft.rfft(x - x.mean(axis=-1, keepdims=True), n=size, axis=-1)
    parts = np.ascontiguousarray(spectrum).view(np.float64)  # real, imaginary interleaved
    np.square(parts, out=parts)  # in place: no new arrays of the spectrum's size
    summed = parts.sum(axis=-2)  # over chains
    power = (summed[..., 0::2] + summed[..., 1::2]) / x.shape[-2]
    return np.fft.irfft(power, n=size, axis=-1)[..., :n] / n


def _ess(x):
    """Stan's effective sample size, no splitting. Geyer's initial positive sequence over
    the pairs (rho[2j], rho[2j+1]) stops at the first pair with a non-positive sum (or
    the end of the draws); Stan keeps that pair's even lag where it is positive; the
    monotone sequence is the running minimum of the pair sums before it."""
    m, n = x.shape[-2:]
    if n < 4:
        return np.full(x.shape[:-2], np.nan)
    acov = _mean_autocovariance(x)
    mean_var, var_plus = _variances(x)
    rho = 1.0 - (mean_var[..., None] - acov) / var_plus[..., None]
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
        out[valid] = _in_parallel(partial(_quietly, statistic), x[valid])
    return out


def _quietly(statistic, x):
    with np.errstate(all="ignore"):  # (NumPy's error state is per thread)
        return statistic(x)


#: Draws per part, at least, when components are split over threads.
PARALLEL_VALUES = 2**14


def _cores():
    """The cores this process may run on (at most 8 used)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return min(len(usable) if usable else os.cpu_count() or 1, 8)


@cache
def _threads():
    return ThreadPoolExecutor(_cores(), thread_name_prefix="ppl-summary")


os.register_at_fork(after_in_child=_threads.cache_clear)  # a fork's copy has no threads


def _in_parallel(statistic, x):
    """`statistic` of the components (leading axis) of `x`, in parts over up to 8 cores:
    NumPy releases the GIL while it sorts, transforms and does arithmetic, so a run's
    checks take about 1/cores of the time; each component's values are unchanged."""
    parts = min(_cores(), len(x), x.size // PARALLEL_VALUES)
    if parts <= 1:
        return statistic(x)
    return np.concatenate(list(_threads().map(statistic, np.array_split(x, parts))))


def _scalar(statistic, x):
    x = np.asarray(x, dtype=np.float64)
    return float(_batch(statistic, x[None])[0])


def _unscaled(x):
    return x


def _tail_indicators(x, quantiles=None):
    """The split draws' indicators of the 5% and 95% quantiles, stacked on a first axis."""
    if quantiles is None:
        quantiles = _quantiles(x, (0.05, 0.95))
    return _split((x <= quantiles[..., None, None]) * 1.0)


def _tail(x):
    return np.fmin(*_ess(_tail_indicators(x)))


def _r_hat(x, z, scale, median=None):
    """Split R-hat, the larger of the bulk and folded versions, given `z` = scale(split
    draws); a NaN one (e.g. constant folds) is skipped."""
    if median is None:
        median = _quantiles(x, (0.5,))[0]
    folded = scale(_split(np.abs(x - median[..., None, None])))
    return np.fmax(_gelman_rubin(z), _gelman_rubin(folded))


def _diagnostics(x, scale):
    """(r_hat, ess_bulk, ess_tail) stacked on a last axis, with draws scaled by `scale`
    (normal scores of ranks, or none) for the first two; the scaling is done once, and
    the quantiles of all three come from one sort."""
    z = scale(_split(x))
    q05, median, q95 = _quantiles(x, (0.05, 0.5, 0.95))
    tails = _tail_indicators(x, np.stack([q05, q95]))
    bulk, tail05, tail95 = _ess(np.concatenate([z[None], tails]))  # one FFT pass
    return np.stack([_r_hat(x, z, scale, median), bulk, np.fmin(tail05, tail95)], axis=-1)


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
