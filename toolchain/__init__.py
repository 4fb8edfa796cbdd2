"""Host-side toolchain: models, training, quantisation, export, verification, CLI."""

__version__ = "0.1.0"
