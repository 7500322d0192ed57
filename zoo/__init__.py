"""The model zoo: every entry registers itself when its module is imported here."""

from zoo import registry
from zoo.translator import entry as _translator  # noqa: F401  (registers "translator")

__all__ = ["registry"]
