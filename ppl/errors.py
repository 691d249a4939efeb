"""Exceptions raised by ppl: one base class, each message says what to fix."""


class PPLError(Exception):
    """Base class of every error ppl raises on purpose."""


class ModelError(PPLError, ValueError):
    """The model itself is at fault: a site, its name or its distribution."""


class DataError(PPLError, ValueError):
    """Observed data is at fault: its shape or its values."""


class OptionError(PPLError, ValueError):
    """A method name or an option given to `infer()` or a method is at fault."""


class InferenceError(PPLError, RuntimeError):
    """Inference failed numerically (non-finite density, degenerate weights...)."""


class CheckpointError(PPLError, ValueError):
    """A checkpoint file that cannot be resumed: corrupt, truncated, or from another run."""


class SamplingWarning(UserWarning):
    """A sampler's diagnostics look wrong (divergences, R-hat, low ESS, E-BFMI...)."""
