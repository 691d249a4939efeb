"""The base of every method object that `infer()` accepts."""

from ppl.errors import OptionError


class Method:
    """A configured inference method: `run(model, **common) -> Posterior`.

    Method-specific settings are fields of the object; the options common to all
    methods (`common_options`) arrive as keywords from `infer()`.
    """

    name = None
    common_options = ("num_samples", "num_chains", "seed", "progress")

    def __post_init__(self):
        for field, value in vars(self).items():
            if value is None:
                continue
            if isinstance(value, float) and value != value:
                raise OptionError(f"{type(self).__name__}: {field} is NaN")

    def option_names(self):
        return tuple(getattr(self, "__dataclass_fields__", {}))

    def run(self, model, **common):
        raise NotImplementedError
