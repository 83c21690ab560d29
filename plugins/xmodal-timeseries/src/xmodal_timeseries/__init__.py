"""xmodal-timeseries: 1-D time series as images for xmodal's vision backbones.

An example third-party xmodal plugin. It registers through the ``xmodal`` entry-point
group only (see ``pyproject.toml``) and uses only xmodal's public APIs.
"""

__version__ = "0.1.0"
