"""The experiment's data: loaded from its source (``sources``), checked (``dataset``),
and its guardrails (``guardrails``)."""

from . import guardrails
from .dataset import Dataset
from .sources import load

__all__ = ["Dataset", "guardrails", "load"]
