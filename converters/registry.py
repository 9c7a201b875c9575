"""tsconvert's extension points (input formats, missing-value policies, downsampling methods, output
formats, ...) use tsplugin's one registry helper: duplicates are refused, unknown names list the valid ones."""

from __future__ import annotations

from tsplugin.registry import DuplicateNameError, Registry, RegistryError, UnknownNameError

__all__ = ["DuplicateNameError", "Registry", "RegistryError", "UnknownNameError"]
