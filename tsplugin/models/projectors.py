"""Projectors: encoder features -> LLM hidden size, in one registry (LLaVA's names).

- `linear`: one Linear layer.
- `mlp2x_gelu` (and any `mlpNx_gelu`, N >= 1, parsed like LLaVA's `build_vision_projector`):
  Linear(in, out) followed by N-1 blocks of GELU + Linear(out, out).
- `identity`: no parameters; only when the encoder already emits the LLM hidden size.

`register_projector` refuses duplicates; `get_projector` / `build_projector` list the valid names.
"""

from __future__ import annotations

import re
from typing import Callable

from torch import nn

from tsplugin.registry import Registry

ProjectorBuilder = Callable[[int, int], nn.Module]

PROJECTORS: Registry[ProjectorBuilder] = Registry("projector", hint="(or mlpNx_gelu, N >= 1)")
_MLP_PATTERN = re.compile(r"^mlp(\d+)x_gelu$")


def register_projector(name: str, builder: ProjectorBuilder) -> ProjectorBuilder:
    """Register `builder(in_dim, out_dim) -> nn.Module` under `name` (refuses duplicates)."""
    return PROJECTORS.register(name, builder)


def _mlp(depth: int) -> ProjectorBuilder:
    def build(in_dim: int, out_dim: int) -> nn.Module:
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        for _ in range(depth - 1):
            layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
        return nn.Sequential(*layers)

    return build


def _identity(in_dim: int, out_dim: int) -> nn.Module:
    if in_dim != out_dim:
        raise ValueError(f"projector 'identity' needs the encoder width ({in_dim}) to equal the LLM hidden size ({out_dim})")
    return nn.Identity()


def get_projector(name: str) -> ProjectorBuilder:
    """The builder for `name`; `mlpNx_gelu` for any N >= 1; unknown names raise with the valid list."""
    if name in PROJECTORS:
        return PROJECTORS[name]
    match = _MLP_PATTERN.match(name) if isinstance(name, str) else None
    if match and int(match.group(1)) >= 1:
        return _mlp(int(match.group(1)))
    raise PROJECTORS.unknown(name)


def build_projector(name: str, in_dim: int, out_dim: int) -> nn.Module:
    """Build projector `name` mapping `in_dim` features to `out_dim` (the LLM hidden size)."""
    return get_projector(name)(int(in_dim), int(out_dim))


register_projector("linear", lambda in_dim, out_dim: nn.Linear(in_dim, out_dim))
register_projector("mlp2x_gelu", _mlp(2))
register_projector("identity", _identity)

__all__ = ["PROJECTORS", "build_projector", "get_projector", "register_projector"]
