"""Errors of the exporter."""


class ExportError(RuntimeError):
    """An artifact failed to build or to match the Keras model; names the artifact."""


class ConversionError(ExportError):
    """The TFLite converter could not convert a model (a quantized variant is then skipped)."""
