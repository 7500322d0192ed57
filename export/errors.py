"""Errors of the exporter."""


class ExportError(RuntimeError):
    """An artifact failed to build or to match the Keras model; names the artifact."""
