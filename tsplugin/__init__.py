"""tsplugin: a `timeseries` modality for stock LLaMA-Factory.

Importing this package is cheap on purpose: model classes and LLaMA-Factory hooks live in
submodules and are imported only when needed (see `tsplugin._bootstrap`).
"""

__version__ = "0.1.0"
