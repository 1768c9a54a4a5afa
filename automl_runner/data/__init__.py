"""The experiment's data: loaded from its source (``sources``) and checked (``dataset``)."""

from .dataset import Dataset
from .sources import load

__all__ = ["Dataset", "load"]
