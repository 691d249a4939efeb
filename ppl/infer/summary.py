"""Posterior summaries: rank-normalised bulk/tail ESS and split R-hat (Vehtari et al. 2021).

The effective sample size follows Stan (and ArviZ, and the `posterior` R package)
to the letter: Geyer's initial positive sequence with Stan's last-pair
correction, the monotone sequence, and the cap ESS <= S·log10(S). NumPyro's
`effective_sample_size` drops the correction, which shifts ESS by a few percent, and
its `autocovariance` inverts every chain's spectrum: here the chains' spectra are
averaged first (ESS needs only their mean autocovariance), one inverse per component.
"""

import numbers
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial

import numpy as np
from scipy import special
from scipy.fft import next_fast_len

from ppl.errors import OptionError

__all__ = [
    "ess", "ess_mean", "ess_means", "ess_bulk", "ess_tail", "r_hat", "rank_diagnostics",
    "unranked_diagnostics", "Summary", "summarize", "component_labels", "nonfinite_counts",
]  # fmt: skip

COLUMNS = ("mean", "sd", "5%", "50%", "95%", "ess_bulk", "ess_tail", "r_hat")


# Every statistic works on draws shaped (..., chains, draws), one value per leading index:
# the diagnostics of many components are computed together, with no Python loop per
# component or per lag.


def _split(x):
    """(..., chains, draws) -> (..., 2 * chains, draws // 2): halves of each chain as chains
    (an odd number of draws loses its middle one). For an even number, a reshape: no
    copy of contiguous draws (every statistic here is symmetric in the chains)."""
    m, n = x.shape[-2:]
    half = n // 2
    if n % 2 == 0:
        return x.reshape(x.shape[:-2] + (2 * m, half))
    return np.concatenate([x[..., :half], x[..., n - half :]], axis=-2)


_SIGN_BITS = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _sorted_order(rows):
    """Each row's sorting permutation (R, n), and the pairs of sorted neighbours (R, n-1)
    that may be tied or out of order.

    Sorting the values' bit patterns with each one's position packed into its lowest
    bits takes a third of the time of an argsort. The bits are those of an integer that
    orders like the float; without its lowest ceil(log2 n) bits it may not tell values
    apart that agree to ~1e-12 (relative): only neighbours that share the kept bits can
    be tied or misordered, and they are flagged.
    """
    n = rows.shape[-1]
    low = np.int64((1 << (n - 1).bit_length()) - 1)
    keys = np.add(rows, 0.0).view(np.int64)  # a new array; + 0.0 turns -0.0 into 0.0
    scratch = np.right_shift(keys, 63)
    scratch &= _SIGN_BITS
    keys ^= scratch  # negative floats: reversed order -> ascending
    keys &= ~low
    keys |= np.arange(n)
    keys.sort(axis=-1)
    neighbours = np.bitwise_xor(keys[:, 1:], keys[:, :-1], out=scratch[:, 1:])
    neighbours &= ~low
    keys &= low
    return keys, neighbours == 0


def _ramp(sizes):
    """0, 1, .., size - 1 for each of `sizes`, concatenated."""
    return np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _ranks_in_order(rows):
    """(order, ties) of rows (R, n): each row's sorting permutation, and where a rank is
    not 1 + the sorted position (tied values share their average rank): (flat indices
    into `order`, ranks), or None when no value is tied (continuous draws).
    Only the flagged neighbours of `_sorted_order` are looked at again, by value (ties
    are common in MCMC draws: a rejected move repeats the last draw)."""
    n = rows.shape[-1]
    order, flagged = _sorted_order(rows)
    pairs = np.flatnonzero(flagged)  # flat over (R, n - 1)
    if pairs.size == 0:
        return order, None
    row, first = np.divmod(pairs, n - 1)
    # groups of flagged neighbours: runs of consecutive pairs in a row
    new = np.ones(pairs.size, bool)
    new[1:] = (pairs[1:] != pairs[:-1] + 1) | (row[1:] != row[:-1])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, pairs.size)) + 1  # members: a run's pairs + 1
    group_starts = np.repeat(row[starts] * n + first[starts], sizes)
    members = group_starts + _ramp(sizes)  # flat indices into `order`, group by group
    index = order.ravel()[members]
    values = rows.ravel()[members - members % n + index]
    same_group = np.zeros(members.size, bool)  # member i is in the group of member i - 1
    same_group[1:] = group_starts[1:] == group_starts[:-1]
    if np.any(same_group[1:] & (values[1:] < values[:-1])):  # near-ties out of order
        by_value = np.lexsort((values, group_starts))
        order.ravel()[members] = index[by_value]
        values = values[by_value]
    tie_starts = ~same_group
    tie_starts[1:] |= values[1:] != values[:-1]
    if tie_starts.all():
        return order, None
    tie = np.cumsum(tie_starts) - 1
    positions = members % n + 1.0
    ranks = (np.bincount(tie, weights=positions) / np.bincount(tie))[tie]
    moved = ranks != positions
    return order, (members[moved], ranks[moved])


def _scored_ranks(x, score, out=None):
    """`score` of the ranks 1..n of the values of the rows of `x`'s last axis (ties: the
    average rank), each in its value's place; the n scores are computed once for all
    rows, and again only for tied values."""
    rows = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    order, ties = _ranks_in_order(rows)
    scores = np.empty(rows.shape) if out is None else out.reshape(rows.shape)  # (a view)
    np.put_along_axis(scores, order, score(np.arange(1.0, rows.shape[-1] + 1))[None], axis=-1)
    if ties is not None:
        members, ranks = ties
        n = rows.shape[-1]
        scores.ravel()[members - members % n + order.ravel()[members]] = score(ranks)
    return scores.reshape(x.shape)


def _average_ranks(x):
    """Ranks 1..n along the last axis, tied values sharing their average rank (the values
    of `scipy.stats.rankdata(method="average")`, in a fraction of its time)."""
    return _scored_ranks(x, lambda ranks: ranks)


def _z_scale(x, out=None):
    """Normal scores of the ranks (ties averaged) over each leading index's draws."""
    flat = x.reshape(x.shape[:-2] + (-1,))
    n = flat.shape[-1]
    scores = _scored_ranks(flat, lambda r: special.ndtri((r - 0.375) / (n + 0.25)), out)
    return scores.reshape(x.shape)


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


def _moments(x):
    """(centered, W, var_plus) of draws (..., chains, draws): each chain minus its mean,
    the mean within-chain variance (ddof=1) and the pooled estimate of the variance,
    W (n-1)/n + B/n."""
    m, n = x.shape[-2:]
    means = x.mean(axis=-1, keepdims=True)
    centered = x - means
    within = np.einsum("...i,...i->...", centered, centered).mean(axis=-1) / (n - 1)
    between = means[..., 0].var(axis=-1, ddof=1) if m > 1 else 0.0
    return centered, within, within * (n - 1) / n + between


def _gelman_rubin(x):
    """R-hat of draws (..., chains, draws), not split (NumPyro's `gelman_rubin`)."""
    _, within, var_plus = _moments(x)
    return np.sqrt(var_plus / within)


def _mean_autocovariance(centered):
    """The chains' biased autocovariances at lags 0..n-1, averaged over chains: (..., n),
    of draws less their chain's mean. Averaged before the inverse FFT (it is linear), so
    one inverse transform per index."""
    n = centered.shape[-1]
    size = 2 * next_fast_len(n, real=True)  # >= 2n - 1: no circular wrap-around
    # (NumPy's FFT: scipy.fft zero-pads to `size` about 3x slower here)
    spectrum = np.fft.rfft(centered, n=size, axis=-1)
    parts = np.ascontiguousarray(spectrum).view(np.float64)  # real, imaginary interleaved
    np.square(parts, out=parts)  # in place: no new arrays of the spectrum's size
    summed = parts.sum(axis=-2)  # over chains
    power = (summed[..., 0::2] + summed[..., 1::2]) / centered.shape[-2]
    return np.fft.irfft(power, n=size, axis=-1)[..., :n] / n


def _ess(x):
    """Stan's effective sample size, no splitting. Geyer's initial positive sequence over
    the pairs (rho[2j], rho[2j+1]) stops at the first pair with a non-positive sum (or
    the end of the draws); Stan keeps that pair's even lag where it is positive; the
    monotone sequence is the running minimum of the pair sums before it."""
    m, n = x.shape[-2:]
    if n < 4:
        return np.full(x.shape[:-2], np.nan)
    centered, mean_var, var_plus = _moments(x)
    acov = _mean_autocovariance(centered)
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
    if valid.all():  # (no copy of the valid draws)
        return _in_parallel(partial(_quietly, statistic), x)
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


def _unscaled(x, out=None):
    if out is None:
        return x
    out[...] = x
    return out


def _tail_indicators(x, quantiles=None, out=None):
    """The split draws' indicators of the 5% and 95% quantiles, stacked on a first axis
    (written into `out` when given)."""
    if quantiles is None:
        quantiles = _quantiles(x, (0.05, 0.95))
    split = _split(x)
    if out is None:
        out = np.empty((2,) + split.shape)
    for quantile, indicator in zip(quantiles, out):
        np.less_equal(split, quantile[..., None, None], out=indicator)
    return out


def _tail(x):
    return np.fmin(*_ess(_tail_indicators(x)))


def _r_hat(x, z, scale, median=None):
    """Split R-hat, the larger of the bulk and folded versions, given `z` = scale(split
    draws); a NaN one (e.g. constant folds) is skipped."""
    if median is None:
        median = _quantiles(x, (0.5,))[0]
    distance = x - median[..., None, None]
    folded = scale(_split(np.abs(distance, out=distance)))
    return np.fmax(_gelman_rubin(z), _gelman_rubin(folded))


def _diagnostics(x, scale):
    """(r_hat, ess_bulk, ess_tail) stacked on a last axis, with draws scaled by `scale`
    (normal scores of ranks, or none) for the first two; the scaling is done once, and
    the quantiles of all three come from one sort."""
    split = _split(x)
    series = np.empty((3,) + split.shape)  # scaled draws and the two tail indicators
    z = scale(split, out=series[0])
    q05, median, q95 = _quantiles(x, (0.05, 0.5, 0.95))
    _tail_indicators(x, (q05, q95), out=series[1:])
    bulk, tail05, tail95 = _ess(series)  # one FFT pass
    return np.stack([_r_hat(x, z, scale, median), bulk, np.fmin(tail05, tail95)], axis=-1)


def ess(x):
    """Stan's effective sample size of draws shaped (chains, draws), no splitting."""
    return _scalar(_ess, x)


def _split_ess(x):
    return _ess(_split(x))


def ess_mean(x):
    """Split-chain ESS of the draws themselves: the one that sets the MC error of the mean."""
    return _scalar(_split_ess, x)


def ess_means(x):
    """`ess_mean` of every component of draws (..., chains, draws) at once: shape (...)."""
    return _batch(_split_ess, x)


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

    columns = COLUMNS  # (the quantile columns of summarize(..., prob))

    def __missing__(self, key):
        rows = [r for r in self if isinstance(key, str) and r.startswith(f"{key}[")]
        if rows:
            shown = ", ".join(rows[:3]) + (", ..." if len(rows) > 3 else "")
            raise KeyError(f"{key!r} has a row per component: {shown}")
        raise KeyError(key)

    def __str__(self):
        rows = [[name] + [_cell(c, row[c]) for c in self.columns] for name, row in self.items()]
        table = [[""] + list(self.columns)] + rows
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        widths = [widths[0]] + [max(w, 8) for w in widths[1:]]
        return "\n".join("  ".join(f"{c:>{w}}" for c, w in zip(r, widths)) for r in table)

    __repr__ = __str__

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame.from_dict(self, orient="index")


def _cell(column, value):
    """ESS as whole draws, R-hat to 3 decimals, other statistics to 3 decimals unless
    that would show under 2 significant digits or a long integer part (then 2.489e+06)."""
    if not np.isfinite(value):
        return str(value)
    if column.startswith("ess"):
        return f"{value:.0f}"
    if column == "r_hat" or value == 0 or 1e-2 <= abs(value) < 1e5:
        return f"{value:.3f}"
    return f"{value:.3e}"


def nonfinite_counts(samples):
    """site -> its number of non-finite values, for the sites of `samples` that have any."""
    counts = {n: int(np.size(v) - np.count_nonzero(np.isfinite(v))) for n, v in samples.items()}
    return {n: k for n, k in counts.items() if k}


def component_labels(name, shape):
    """Names of a site's scalar components: `theta`, `theta[3]`, `L[0,1]`."""
    return [name if not i else f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]


def summarize(samples, prob=0.9):
    """A `Summary` of every scalar component of `samples` (name -> (chains, draws, ...));
    each site's components get their R-hat and ESS in one vectorised computation.
    `prob`: the mass of the central interval whose ends are columns (0.9: "5%", "95%")."""
    if isinstance(prob, bool) or not isinstance(prob, numbers.Real) or not 0 < prob < 1:
        raise OptionError(
            f"summary: prob={prob!r} must be a number in (0, 1), the mass of the central "
            "interval (e.g. 0.9 for the 5% and 95% quantiles)"
        )
    low = round((1 - prob) / 2, 12)  # (0.05, not 0.04999999999999999, for prob=0.9)
    quantiles = (low, 0.5, round(1 - low, 12))
    table = Summary()
    table.columns = ("mean", "sd", *(f"{100 * q:g}%" for q in quantiles), *COLUMNS[5:])
    for name, value in samples.items():
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.number) and value.dtype != bool:
            continue
        value = value.astype(np.float64)
        components = np.moveaxis(value.reshape(value.shape[:2] + (-1,)), -1, 0)
        rhat, bulk, tail = rank_diagnostics(components)
        flat = components.reshape(len(components), -1)  # (K, chains * draws)
        q = _quantiles(components, quantiles)
        q[:, np.isnan(flat).any(axis=1)] = np.nan  # (NaN sorts last: low quantiles looked fine)
        mean = flat.mean(axis=1)
        sd = flat.std(axis=1, ddof=1) if flat.shape[1] > 1 else np.full(len(flat), np.nan)
        columns = (mean, sd, *q, bulk, tail, rhat)  # in the order of table.columns
        for k, label in enumerate(component_labels(name, value.shape[2:])):
            table[label] = {c: float(v[k]) for c, v in zip(table.columns, columns)}
    return table
