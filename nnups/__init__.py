"""nnups: faithful 2x neural upscaling of JPEG, PNG and TIFF images."""

from nnip import __version__

__all__ = ["__version__"]
