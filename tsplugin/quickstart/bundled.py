"""Files shipped for users (recipes, the GDSH-shaped sample), found the same way in a clone and after
`pip install` of a wheel.

A wheel carries them as package data under `tsplugin/_bundled/<name>` (pyproject.toml's
`[tool.hatch.build.targets.wheel.force-include]` copies them there at build time); a clone or an
editable install reads them where they live in the repository. `BUNDLED` is the one table of both
locations; tests check that pyproject.toml agrees and that a built wheel holds every entry.
"""

from __future__ import annotations

from pathlib import Path

# name under tsplugin/_bundled/ in a wheel -> path in the repository
BUNDLED: dict[str, str] = {
    "yaml_recipes": "yaml_recipes",
    "gdsh_sample": "dataset_info/gdsh_sample_source",  # what dataset_info/gdsh_sample*.jsonl were converted from
}
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "_bundled"  # tsplugin/_bundled
REPO_ROOT = Path(__file__).resolve().parents[2]


def bundled(name: str) -> Path:
    """The directory of bundled `name`: the wheel's package data, else the clone's own folder."""
    if name not in BUNDLED:
        raise KeyError(f"no bundled files named {name!r}; valid names: {sorted(BUNDLED)}")
    for candidate in (PACKAGE_DIR / name, REPO_ROOT / BUNDLED[name]):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"bundled {name!r} is missing: neither {PACKAGE_DIR / name} (a wheel's package data) nor "
        f"{REPO_ROOT / BUNDLED[name]} (a clone) exists. Reinstall tsfactory from a wheel built with "
        "pyproject.toml's force-include, or run from a full clone."
    )
