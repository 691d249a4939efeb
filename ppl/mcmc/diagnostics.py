"""What a user should hear about after an MCMC run, in `post.diagnostics` and as warnings.

Each problem found is one line of `diagnostics["warnings"]` and one `SamplingWarning`
that points at the user's `ppl.infer(...)` line. The thresholds are Stan's and ArviZ's:

- divergent transitions: any (Betancourt 2017: the sampler missed a region of high
  curvature, so the draws may be biased);
- E-BFMI < 0.3 in a chain (Betancourt 2016): momentum resampling barely moves the
  energy, so the tails are explored slowly (heavy tails, funnels);
- max tree depth hit on more than 1% of a chain's draws: trajectories cut short
  (a rare hit is harmless; Stan reports every hit, we warn once it is not rare);
- split R-hat > 1.01 (Vehtari et al. 2021, rank-normalised, larger of bulk and folded;
  this and the ESS check are skipped with `ppl.infer(..., convergence_checks=False)`);
- bulk or tail ESS < 100 per chain, i.e. < 100 * num_chains over the run (Vehtari et al.
  2021's rule, also rstan's): below it the MC error of means or quantiles is unreliable.

Acceptance rates are reported per chain (and per part of a combined kernel) but not
warned about: a well-adapted kernel sits near its target by construction, and a
stuck chain shows up in R-hat and ESS, as in Stan, ArviZ and NumPyro.

R-hat is computed with any number of chains, one included: split R-hat compares the
halves of each chain, so a single chain still shows drift (not multimodality).
"""

import warnings

import numpy as np

from ppl.errors import SamplingWarning, warn
from ppl.infer.summary import component_labels, rank_diagnostics, unranked_diagnostics

__all__ = [
    "SamplingWarning", "warn", "e_bfmi", "check_energy", "check_tree_depth",
    "check_convergence", "check_run",
    "E_BFMI_MIN", "TREE_DEPTH_SHARE", "R_HAT_MAX", "ESS_PER_CHAIN",
]  # fmt: skip

E_BFMI_MIN = 0.3
TREE_DEPTH_SHARE = 0.01
R_HAT_MAX = 1.01
ESS_PER_CHAIN = 100
# Runs with more components than this are screened before exact checks (`_component_stats`).
EXACT_COMPONENTS = 64
_EXACT_VALUES = 2**20  # draws ranked exactly per run, at most (about 0.1 s on 2 cores)
_CHUNK_VALUES = 2**21  # values per vectorised block (16 MB of float64)
_NAMES_SHOWN = 6


def _chains(flags):
    return ", ".join(str(c) for c in np.flatnonzero(flags))


# ----- per-draw statistics of the kernels ---------------------------------------------


def e_bfmi(energy):
    """Energy Bayesian fraction of missing information per chain, of energies shaped
    (chains, draws): mean squared change between draws over the energy's variance
    (ddof=1, as ArviZ's `bfmi`). Near 1 (2 for independent draws) is healthy."""
    energy = np.asarray(energy, dtype=np.float64)
    if energy.shape[1] < 3:
        return np.full(energy.shape[0], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.square(np.diff(energy, axis=1)).mean(axis=1) / energy.var(axis=1, ddof=1)


def check_energy(energy):
    """E-BFMI per chain and a message when any chain is below `E_BFMI_MIN`."""
    value = e_bfmi(energy)
    low = value < E_BFMI_MIN
    if not low.any():
        return value, None
    shown = ", ".join(f"{v:.2f}" for v in value[low])
    return value, (
        f"E-BFMI below {E_BFMI_MIN} in chain(s) {_chains(low)} ({shown}): momentum "
        "resampling barely changes the energy, so the sampler explores the tails of the "
        "posterior slowly (typical of heavy tails and funnels). Reparameterise the model, "
        "e.g. non-centred hierarchical scales."
    )


def check_tree_depth(hits, num_draws, max_tree_depth):
    """A message when more than `TREE_DEPTH_SHARE` of a chain's draws hit the max tree depth."""
    share = np.asarray(hits) / max(num_draws, 1)
    over = share > TREE_DEPTH_SHARE
    if not over.any():
        return None
    shown = ", ".join(f"{s:.0%}" for s in share[over])
    return (
        f"{int(np.sum(hits))} draws hit max_tree_depth={max_tree_depth}; more than "
        f"{TREE_DEPTH_SHARE:.0%} of the draws of chain(s) {_chains(over)} ({shown}), so "
        "trajectories were cut short and the sampler moves less per draw than it could. "
        f"Raise max_tree_depth (e.g. NUTS(max_tree_depth={max_tree_depth + 2})), use "
        "NUTS(dense_mass=True) for correlated posteriors, or reparameterise the model."
    )


# ----- convergence of the draws ---------------------------------------------------------


def _component_stats(x):
    """(r_hat, ess_bulk, ess_tail) per component of draws (K, chains, draws), float64:
    the components of all sites of a run together.

    Cost control: the exact statistics (those of `Posterior.summary()`, computed for
    all checked components together) cost about 0.2 ms per component at 4 x 1000 draws
    on 2 cores (ranks and FFTs). Runs of up to 2 x `EXACT_COMPONENTS` components get them for every
    component, fewer when there are many draws (so that about 2 x `_EXACT_VALUES` draws
    are ranked, at least 6 components). Larger runs are screened first by
    `unranked_diagnostics` (the same statistics without ranks, in blocks of
    `_CHUNK_VALUES` values), and only the worst few (as many as get exact statistics) under each of its three statistics get
    the exact values; the others keep their screen values. So the worst values and the
    names in warnings are exact (barring a screen that misorders near-ties), while
    counts of flagged components of a large run are approximate.
    """
    num_components, draws_per_component = x.shape[0], x.shape[1] * x.shape[2]
    out = np.full((3, num_components), np.nan)
    if x.shape[2] < 4:  # too few draws to split: no statistic, as in `ppl.infer.summary`
        return out
    # exact statistics rank every draw of a component: keep that work bounded
    exact = max(3, min(EXACT_COMPONENTS, _EXACT_VALUES // draws_per_component))
    if num_components <= 2 * exact:  # the screen would send (nearly) all of them on anyway
        # constant or broken draws get NaN (as in `ppl.infer.summary`)
        return np.stack(rank_diagnostics(x))
    block = max(1, _CHUNK_VALUES // draws_per_component)
    chunks = [unranked_diagnostics(x[i : i + block]) for i in range(0, num_components, block)]
    out[:] = [np.concatenate(c) for c in zip(*chunks)]
    # NaN (constant or broken draws: no statistic) sorts last, not as the worst
    badness = np.nan_to_num(np.stack([-out[0], out[1], out[2]]), nan=np.inf)
    checked = np.unique(np.argsort(badness, axis=1)[:, :exact])
    out[:, checked] = rank_diagnostics(x[checked])
    return out


def _worst(items, reverse):
    """'theta[3]: 1.052, tau: 1.013 and 4 more', worst first."""
    items = sorted(items, key=lambda kv: kv[1], reverse=reverse)
    fmt = "{:.3f}" if reverse else "{:.0f}"
    shown = ", ".join(f"{k}: {fmt.format(v)}" for k, v in items[:_NAMES_SHOWN])
    more = len(items) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def check_convergence(samples):
    """R-hat and bulk/tail ESS over every component of `samples` (name -> (chains,
    draws, ...)): their worst values and one message per kind of failure."""
    labels, blocks = [], []
    num_chains = None
    for name, value in samples.items():
        value = np.asarray(value)
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            continue
        num_chains = value.shape[0]
        x = value.reshape(value.shape[:2] + (-1,))
        if x.shape[-1] == 0:
            continue
        labels += component_labels(name, value.shape[2:])
        blocks.append(x)
    if not labels:
        return {"r_hat_max": np.nan, "ess_bulk_min": np.nan, "ess_tail_min": np.nan}, []
    # the sites' components together (by shape: a run's draws share one), one vectorised
    # computation and one budget of exact statistics for them all
    stats = [None] * len(blocks)
    for shape in {x.shape[:2] for x in blocks}:
        group = [i for i, x in enumerate(blocks) if x.shape[:2] == shape]
        sizes = [blocks[i].shape[-1] for i in group]
        joint = np.empty((sum(sizes),) + shape)  # components first, float64: one copy
        for i, start, size in zip(group, np.cumsum([0] + sizes), sizes):
            joint[start : start + size] = np.moveaxis(blocks[i], -1, 0)
        stats_of_group = _component_stats(joint)
        for i, part in zip(group, np.split(stats_of_group, np.cumsum(sizes)[:-1], axis=-1)):
            stats[i] = part
    rhat, bulk, tail = np.concatenate(stats, axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no valid component
        diag = {
            "r_hat_max": float(np.nanmax(rhat)),
            "ess_bulk_min": float(np.nanmin(bulk)),
            "ess_tail_min": float(np.nanmin(tail)),
        }
    messages = []
    bad = [(k, v) for k, v in zip(labels, rhat) if v > R_HAT_MAX]
    disagree = "the chains disagree" if num_chains > 1 else "the chain's two halves disagree"
    if bad:
        messages.append(
            f"r_hat > {R_HAT_MAX} for {len(bad)} of {len(labels)} components "
            f"({_worst(bad, reverse=True)}): {disagree}, so the draws do not yet "
            "represent the posterior. Run a longer warmup (num_warmup), look for several "
            "modes, or reparameterise the model."
        )
    threshold = ESS_PER_CHAIN * num_chains
    what = {"bulk": "means and medians", "tail": "quantiles and intervals (e.g. 5%, 95%)"}
    for kind, values in (("bulk", bulk), ("tail", tail)):
        low = [(k, v) for k, v in zip(labels, values) if v < threshold]
        if low:
            messages.append(
                f"ess_{kind} < {threshold} ({ESS_PER_CHAIN} per chain x {num_chains} "
                f"chain{'s' * (num_chains != 1)}) "
                f"for {len(low)} of {len(labels)} components ({_worst(low, reverse=False)}): "
                f"the Monte Carlo error of posterior {what[kind]} is unreliable. Draw more "
                "samples (num_samples) or reparameterise the model."
            )
    return diag, messages


# ----- one run ----------------------------------------------------------------------


def check_run(method, stats, samples=None):
    """Diagnostics of one MCMC run from its per-draw `stats` (name -> (chains, draws),
    parts of combined kernels as "j.name") and, when given, its `samples` (latent sites).

    Returns the dict that `post.diagnostics` is updated with; its "warnings" holds one
    message per problem found (the caller warns with each).
    """
    label, parts = method.label, dict(method.walk())

    def where(prefix):  # "nuts", or "Cycle part 0.1 (nuts)" for a part of a combined kernel
        if not prefix:
            return label
        part = parts.get(prefix)
        return f"{label} part {prefix[:-1]}" + (f" ({part.label})" if part else "")

    diag, messages = {}, []
    for key, value in stats.items():
        if key.endswith(".accept_prob"):  # parts of combined kernels
            diag[key[: -len("accept_prob")] + "accept_rate"] = value.mean(axis=1)

    diverging = {
        k[: -len("diverging")]: v for k, v in stats.items() if k.split(".")[-1] == "diverging"
    }
    if diverging:
        diag["divergences"] = sum(v.sum(axis=1) for v in diverging.values())
        total = int(diag["divergences"].sum())
        if total:
            found_in = [where(p)[len(label) + 1 :] for p, v in diverging.items() if p and v.any()]
            messages.append(
                f"{label}: {total} divergent transitions after warmup "
                + (f"in {' and '.join(found_in)} " if found_in else "")
                + f"(per chain: "
                f"{diag['divergences'].tolist()}); the draws may be biased. Raise "
                "target_accept (e.g. 0.95) or reparameterise the model (e.g. non-centred "
                "hierarchical scales)."
            )
    bad = int((~np.isfinite(stats["lp"])).sum())
    diag["nonfinite_draws"] = bad
    if bad:
        messages.append(f"{label}: {bad} draws have a non-finite log density")

    for key, value in stats.items():
        if key.split(".")[-1] == "energy":
            prefix = key[: -len("energy")]
            diag[prefix + "e_bfmi"], message = check_energy(value)
            if message:
                messages.append(f"{where(prefix)}: {message}")

    for prefix, part in parts.items():
        own = {k[len(prefix) :]: v for k, v in stats.items() if k.startswith(prefix)}
        own = {k: v for k, v in own.items() if "." not in k}
        if prefix and not own:
            continue  # not a part of this kernel's stats after all
        extra = dict(part.kernel_diagnostics(own))
        messages += [f"{where(prefix)}: {m}" for m in extra.pop("warnings", ())]
        diag.update({prefix + k: v for k, v in extra.items()})

    if samples is not None:
        convergence, found = check_convergence(samples)
        diag.update(convergence)
        messages += [f"{label}: {m}" for m in found]
    diag["warnings"] = messages
    return diag
