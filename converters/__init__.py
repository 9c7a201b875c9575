"""tsconvert: image-referencing multimodal JSON + per-image CSV series -> ChatTS JSONL.

Design choices: nothing is dropped silently (every record is converted or written to a rejects
file with a reason), only files inside --csv-dir are read, outputs are written atomically, and
no torch is imported anywhere here so the command stays fast.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
