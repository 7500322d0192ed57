"""The model zoo: every entry registers itself where it is defined (`zoo.registry`).

The entry modules (and so TensorFlow) are imported the first time the registry is read, not
when `zoo` is: `zoo --help` and the command line's quiet start (`zoo.cli.quiet_native_logs`)
come before TensorFlow loads.
"""

from zoo import registry

__all__ = ["registry"]
