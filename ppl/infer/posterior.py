"""`Posterior`: what every method returns."""

import json
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.distributions import MaskedDistribution
from numpyro.infer import Predictive

from ppl.core.checks import did_you_mean
from ppl.core.model import as_bound_model, as_key, value_sites
from ppl.errors import PPLError, SiteError, warn
from ppl.infer.summary import summarize

__all__ = ["Posterior", "load"]

_FORMAT = "ppl.Posterior/1"
_ARVIZ_STATS = {"accept_prob": "acceptance_rate", "num_grad_evals": "n_steps"}
# per-draw stats ArviZ reads by name (az.bfmi, plot_energy, plot_pair(divergences=True)),
# which a combined kernel reports per part ("1.energy")
_ARVIZ_PART_STATS = ("diverging", "energy", "tree_depth")
_LOG_LIKELIHOOD_BATCH = 256  # draws per vectorised evaluation of the pointwise likelihood


class Posterior:
    """Draws and diagnostics of one inference run.

    samples: name -> array (chains, draws, *site_shape), constrained values of
        latent sites and deterministic sites.
    diagnostics: method-specific numbers (divergences, accept rate, step size,
        gradient evaluations, wall time...).
    sample_stats: per-draw statistics, name -> array (chains, draws).
    log_evidence: estimate of log p(data) where the method gives one, else None.
    """

    def __init__(
        self, samples, diagnostics=None, *, sample_stats=None, log_evidence=None,
        method=None, model=None, latent_sites=None,
    ):  # fmt: skip
        self.samples = dict(samples)
        self.diagnostics = dict(diagnostics or {})
        self.sample_stats = dict(sample_stats or {})
        self.log_evidence = log_evidence
        self.method = method
        self.model = model
        self.latent_sites = tuple(latent_sites if latent_sites is not None else self.samples)

    @property
    def num_chains(self):
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_samples(self):
        return next(iter(self.samples.values())).shape[1]

    def __getitem__(self, name):
        return self.samples[self._site(name)]

    def _site(self, name):
        """`name`, or a SiteError listing the sites (with a did-you-mean)."""
        if name in self.samples:
            return name
        hint = did_you_mean(name, list(self.samples)) if isinstance(name, str) else ""
        raise SiteError(f"no site {name!r} in this posterior{hint}; sites are {list(self.samples)}")

    def __repr__(self):
        sites = ", ".join(f"{k}{tuple(v.shape[2:])}" for k, v in self.samples.items())
        return (
            f"Posterior(method={self.method!r}, chains={self.num_chains}, "
            f"draws={self.num_samples}, sites=[{sites}])"
        )

    def flat(self, name):
        """Draws of `name` with chains and draws merged into one leading axis."""
        v = self[name]
        return v.reshape((-1,) + v.shape[2:])

    def summary(self, sites=None, prob=0.9):
        """Table of mean, sd, 5/50/95% quantiles, ess_bulk, ess_tail and r_hat per component;
        `prob` sets the central interval (0.95: 2.5% and 97.5% columns)."""
        names = list(
            self.samples if sites is None else [sites] if isinstance(sites, str) else sites
        )
        return summarize({self._site(n): self.samples[n] for n in names}, prob)

    def _draws_with_params(self):
        """The latent draws, name -> (chains * draws, ...), with a VI fit's params (in
        diagnostics["params"], per fit) beside them, so that a model's own `ppl.param`
        takes its fitted value, not its initial one. (Samplers hold params at their
        initial values, and report none.)"""
        draws = {n: self.flat(n) for n in self.latent_sites}
        fitted = self.diagnostics.get("params")
        if not isinstance(fitted, dict):
            return draws
        params = {
            name: np.repeat(np.asarray(v), self.num_samples, axis=0)
            for name, v in fitted.items()
            if np.ndim(v) >= 1 and np.shape(v)[0] == self.num_chains and name not in draws
        }
        return {**params, **draws}

    def predictive(self, model, seed=0):
        """Posterior-predictive draws of every site of `model` that is not a latent site here.

        `model` is a bound model (e.g. the same model bound to new inputs and obs=None);
        returns name -> array (chains, draws, *site_shape).
        """
        model = as_bound_model(model)
        draws = self._draws_with_params()
        trace = model.trace(seed)
        sites = [n for n in value_sites(trace) if n not in self.latent_sites]
        _warn_if_surprising(model, trace, self.latent_sites)
        for n in (n for n in self.latent_sites if n in trace):
            now, drawn = tuple(np.shape(trace[n]["value"])), self.samples[n].shape[2:]
            if now != drawn:
                raise PPLError(
                    f"predictive: latent site '{n}' has draws of shape {drawn}, but "
                    f"{model.name} now gives it shape {now} (e.g. a plate of another size "
                    "around it): the posterior has draws of the fitted entries only; predict "
                    "for those, or make the new entries a site of their own"
                )
        out = Predictive(model, posterior_samples=draws, return_sites=sites)(as_key(seed))
        shape = (self.num_chains, self.num_samples)
        return {k: np.asarray(v).reshape(shape + v.shape[1:]) for k, v in out.items()}

    def save(self, path):
        """Write everything to one `.npz` file; `ppl.load(path)` restores it."""
        arrays, diag_values = {}, {}
        for prefix, group in (("samples", self.samples), ("stats", self.sample_stats)):
            arrays.update({f"{prefix}/{k}": np.asarray(v) for k, v in group.items()})
        for k, v in self.diagnostics.items():
            if isinstance(v, (np.ndarray, np.generic, jax.Array)):
                arrays[f"diagnostics/{k}"] = np.asarray(v)
            elif isinstance(v, dict) and v and all(_is_array(x) for x in v.values()):
                # e.g. per-site filtering means or fitted parameters: one array each
                arrays.update({f"diagnostics/{k}/{n}": np.asarray(x) for n, x in v.items()})
            else:
                diag_values[k] = v
        meta = {
            "format": _FORMAT,
            "method": self.method,
            "log_evidence": None if self.log_evidence is None else float(self.log_evidence),
            "latent_sites": list(self.latent_sites),
            "samples": list(self.samples),
            "diagnostics": diag_values,
            "diagnostics_order": list(self.diagnostics),
        }
        arrays["__meta__"] = np.array(json.dumps(meta))
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    def to_arviz(self, log_likelihood=True, posterior_predictive=None):
        """An `arviz.InferenceData` (needs ArviZ installed: `pip install arviz`).

        Groups: posterior, sample_stats (ArviZ's names; a combined kernel's part stats
        also under their plain names, e.g. "energy" for `az.bfmi`), and for a known
        model observed_data and, when `log_likelihood` is true, the pointwise log
        likelihood (for `az.loo` and `az.waic`: masked-out entries left out, each site's
        observed entries along one axis). `posterior_predictive`: draws from
        `post.predictive(...)`, for `az.plot_ppc`.
        """
        try:
            import arviz as az
        except ImportError:
            raise PPLError("to_arviz() needs ArviZ: pip install arviz") from None
        groups = {"posterior": self.samples, "sample_stats": _arviz_stats(self.sample_stats)}
        if self.model is not None:
            observed = {
                n: np.asarray(s["value"])
                for n, s in self.model.trace(0).items()
                if s["type"] == "sample" and s["is_observed"] and s["value"] is not None
            }
            groups["observed_data"] = observed
            if log_likelihood:
                values, counted = self._pointwise_log_likelihood()
                groups["log_likelihood"] = {
                    n: v if counted[n].all() else v[..., counted[n]] for n, v in values.items()
                }
        if posterior_predictive is not None:
            groups["posterior_predictive"] = dict(posterior_predictive)
        return az.from_dict(**{k: v for k, v in groups.items() if v})

    def log_likelihood(self):
        """name -> (chains, draws, *data shape): each observed site's log likelihood per
        data point at every draw, for the fitted model (its data as bound). Entries a
        mask leaves out (`obs_mask`, `handlers.mask`) are not data: NaN."""
        values, counted = self._pointwise_log_likelihood()
        return {n: np.where(counted[n], v, np.nan) for n, v in values.items()}

    def _pointwise_log_likelihood(self):
        """(name -> log likelihood (chains, draws, *batch shape), name -> where it counts)."""
        if self.model is None:
            raise PPLError("this Posterior has no model (e.g. one loaded from a file)")
        if self.model.log_density().subsampled_plates:
            raise PPLError(
                f"{self.model.name} subsamples its data: bind it without subsample_size for "
                "the log likelihood of every data point"
            )
        model = self.model

        def one(draw):
            traced = handlers.trace(handlers.seed(handlers.substitute(model, data=draw), 0))
            out = {}
            for name, site in traced.get_trace().items():
                if site["type"] == "sample" and site["is_observed"]:
                    out[name] = _log_likelihood_and_mask(site)
            return out

        draws = self._draws_with_params()
        out = jax.lax.map(one, draws, batch_size=_LOG_LIKELIHOOD_BATCH)
        shape = (self.num_chains, self.num_samples)
        values = {n: np.asarray(v).reshape(shape + v.shape[1:]) for n, (v, _) in out.items()}
        counted = {n: np.asarray(m[0]) for n, (_, m) in out.items()}
        return values, counted


def _log_likelihood_and_mask(site):
    """An observed site's pointwise log likelihood and where it counts (its masks)."""
    fn = site["fn"]
    log_prob = fn.log_prob(site["value"])
    counted = jnp.ones(jnp.shape(log_prob), bool)
    while isinstance(fn, MaskedDistribution):
        counted = counted & fn._mask
        fn = fn.base_dist
    if site.get("mask") is not None:
        counted = counted & site["mask"]
    return log_prob, jnp.broadcast_to(counted, jnp.shape(log_prob))


def _arviz_stats(stats):
    """Per-draw stats under ArviZ's names; a combined kernel's parts' divergences are
    joined, and its energy and tree depth named plainly where one part has them."""
    out = {_ARVIZ_STATS.get(k, k): v for k, v in stats.items()}
    for name in _ARVIZ_PART_STATS:
        parts = [v for k, v in stats.items() if "." in k and k.rsplit(".", 1)[1] == name]
        if name in out or not parts:
            continue
        if name == "diverging":
            out[name] = np.logical_or.reduce(parts)
        elif len(parts) == 1:
            out[name] = parts[0]
    return out


def _warn_if_surprising(model, trace, latent_sites):
    """Warn when predictive draws would be no prediction: observed sites return their
    bound data, and a model sharing no latent site with the posterior draws its prior."""
    observed = [
        n for n in value_sites(trace) if trace[n].get("is_observed") and n not in latent_sites
    ]
    if observed:
        warn(
            f"predictive: {model.name} has data bound to {observed}, so their draws are that "
            "data; bind the model with None for that data to predict them"
        )
    if not any(n in trace for n in latent_sites):
        warn(
            f"predictive: {model.name} has none of the posterior's latent sites "
            f"{list(latent_sites)}, so its draws come from its prior; is it the model that "
            "was fitted?"
        )


def _is_array(x):
    return isinstance(x, (np.ndarray, np.generic, jax.Array))


def _open(path):
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise PPLError(f"{path} is not a saved ppl Posterior ({e})") from None
    if isinstance(f, np.lib.npyio.NpzFile) and "__meta__" in f.files:
        return f
    if isinstance(f, np.lib.npyio.NpzFile):
        f.close()
    raise PPLError(f"{path} is not a saved ppl Posterior (no metadata entry)")


def load(path):
    """Read a Posterior written by `Posterior.save(path)`."""
    with _open(path) as f:
        meta = json.loads(str(f["__meta__"]))
        if meta.get("format") != _FORMAT:
            raise PPLError(f"{path}: unsupported format {meta.get('format')!r}, expected {_FORMAT}")
        groups = {"samples": {}, "stats": {}, "diagnostics": {}}
        for key in f.files:
            prefix, _, name = key.partition("/")
            if prefix in groups:
                value = f[key]
                # a NumPy scalar was saved as a 0-d array: give the scalar back
                value = value[()] if value.ndim == 0 else value
                if prefix == "diagnostics" and "/" in name:  # a dict of arrays (see `save`)
                    name, _, inner = name.partition("/")
                    groups[prefix].setdefault(name, {})[inner] = value
                else:
                    groups[prefix][name] = value
    samples = {n: groups["samples"][n] for n in meta["samples"]}
    diagnostics = {**meta["diagnostics"], **groups["diagnostics"]}
    order = meta.get("diagnostics_order", list(diagnostics))
    return Posterior(
        samples,
        {k: diagnostics[k] for k in order},
        sample_stats=groups["stats"],
        log_evidence=meta["log_evidence"],
        method=meta["method"],
        latent_sites=meta["latent_sites"],
    )
