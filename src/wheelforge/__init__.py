"""wheelforge: build CUDA wheels from pinned sources for one GPU architecture."""

__version__ = "0.1.0"
