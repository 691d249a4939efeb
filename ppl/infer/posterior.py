"""`Posterior`: what every method returns."""

import json
import zipfile

import jax
import numpy as np
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood as numpyro_log_likelihood

from ppl.core.model import as_bound_model, as_key, value_sites
from ppl.errors import PPLError, warn
from ppl.infer.summary import summarize

__all__ = ["Posterior", "load"]

_FORMAT = "ppl.Posterior/1"
_ARVIZ_STATS = {"accept_prob": "acceptance_rate", "num_grad_evals": "n_steps"}


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
        return self.samples[name]

    def __repr__(self):
        sites = ", ".join(f"{k}{tuple(v.shape[2:])}" for k, v in self.samples.items())
        return (
            f"Posterior(method={self.method!r}, chains={self.num_chains}, "
            f"draws={self.num_samples}, sites=[{sites}])"
        )

    def flat(self, name):
        """Draws of `name` with chains and draws merged into one leading axis."""
        v = self.samples[name]
        return v.reshape((-1,) + v.shape[2:])

    def summary(self, sites=None):
        """Table of mean, sd, 5/50/95% quantiles, ess_bulk, ess_tail and r_hat per component."""
        names = list(
            self.samples if sites is None else [sites] if isinstance(sites, str) else sites
        )
        unknown = [n for n in names if n not in self.samples]
        if unknown:
            raise PPLError(f"no sites {unknown} in this posterior; sites are {list(self.samples)}")
        return summarize({n: self.samples[n] for n in names})

    def predictive(self, model, seed=0):
        """Posterior-predictive draws of every site of `model` that is not a latent site here.

        `model` is a bound model (e.g. the same model bound to new inputs and obs=None);
        returns name -> array (chains, draws, *site_shape).
        """
        model = as_bound_model(model)
        draws = {n: self.flat(n) for n in self.latent_sites}
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

    def to_arviz(self, log_likelihood=True):
        """An `arviz.InferenceData` (needs ArviZ installed: `pip install arviz`), with the
        pointwise log likelihood of each observed site at every draw (for `az.loo` and
        `az.waic`) when the fitted model is known and `log_likelihood` is true."""
        try:
            import arviz as az
        except ImportError:
            raise PPLError("to_arviz() needs ArviZ: pip install arviz") from None
        stats = {_ARVIZ_STATS.get(k, k): v for k, v in self.sample_stats.items()}
        pointwise = self.log_likelihood() if log_likelihood and self.model is not None else None
        return az.from_dict(
            posterior=self.samples, sample_stats=stats or None, log_likelihood=pointwise or None
        )

    def log_likelihood(self):
        """name -> (chains, draws, *data shape): each observed site's log likelihood per
        data point at every draw, for the fitted model (its data as bound)."""
        if self.model is None:
            raise PPLError("this Posterior has no model (e.g. one loaded from a file)")
        if self.model.log_density().subsampled_plates:
            raise PPLError(
                f"{self.model.name} subsamples its data: bind it without subsample_size for "
                "the log likelihood of every data point"
            )
        draws = {n: self.samples[n] for n in self.latent_sites}
        out = numpyro_log_likelihood(self.model, draws, batch_ndims=2)
        return {k: np.asarray(v) for k, v in out.items()}


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
