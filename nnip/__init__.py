"""nnip: neural RAW development and the shared core behind nnip and nnups."""

__version__ = "0.1.0"
