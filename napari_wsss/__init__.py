"""napari-wsss: weakly supervised segmentation annotation assist for napari."""

__version__ = "0.1.0"
