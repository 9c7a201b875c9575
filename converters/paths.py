"""Map an image path from a record to its CSV under --csv-dir, and refuse anything that leaves it.

Image paths are usually absolute paths from another machine (POSIX or Windows); only their name
matters: ``/home/u/x.PV.jpg`` and ``C:\\data\\x.PV.png`` both map to ``CSV_DIR/x.PV.csv`` with the
default pattern. The CSV path must stay inside --csv-dir: here lexically (no '..', not absolute);
the read itself (safeio.read_confined) walks the path one component at a time without following a
link out of --csv-dir, so a path swapped for a symlink after this check is still refused.
"""

from __future__ import annotations

import re
import string
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from .errors import InputError, RejectError

DEFAULT_PATTERN = "{stem}.csv"
PATTERN_FIELDS = {
    "stem": "file name without its image extension (x.PV.jpg -> x.PV; x.PV stays x.PV)",
    "name": "file name with extension",
    "parent": "name of the directory holding the image",
    "relstem": "the image path as written, without extension (relative image paths only)",
}

_WINDOWS = re.compile(r"^[A-Za-z]:|\\")
# Only these suffixes are stripped for {stem}: tag names often contain dots (FIC-1203.PV), and
# cutting ".PV" off an extension-less name would silently map it to the wrong CSV.
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .png .bmp .gif .webp .tif .tiff .svg .pdf .eps .jfif .heic .avif".split()
)


def check_pattern(pattern: str) -> None:
    """Fail early on a --csv-pattern naming unknown fields."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    except ValueError as exc:
        raise InputError(f"--csv-pattern {pattern!r}: {exc}. Use fields like {{stem}}.csv") from None
    unknown = fields - set(PATTERN_FIELDS)
    if unknown or not fields:
        valid = ", ".join("{%s}" % f for f in PATTERN_FIELDS)
        raise InputError(f"--csv-pattern {pattern!r}: unknown or missing fields {sorted(unknown)}; valid fields: {valid}")


def pure_image_path(image: str) -> PurePath:
    """Parse a path written on any OS (backslashes or a drive letter mean Windows)."""
    return PureWindowsPath(image) if _WINDOWS.search(image) else PurePosixPath(image)


def resolve_csv(image: str, csv_dir: Path, pattern: str = DEFAULT_PATTERN) -> Path:
    """Return the CSV path for ``image`` (not opened, links not followed); RejectError(path_outside_csv_dir)
    when the pattern would leave csv_dir. ``csv_dir`` must already be resolved (``Path.resolve()``)."""
    if "\x00" in image:
        raise RejectError(
            "invalid_image_path",
            f"image path {image!r} contains a NUL byte, which no file name can. Fix the image path",
        )
    p = pure_image_path(image)
    stem = p.stem if p.suffix.lower() in IMAGE_EXTENSIONS else p.name
    fields = {"stem": stem, "name": p.name, "parent": p.parent.name}
    if "{relstem" in pattern:
        if p.is_absolute() or p.drive:
            raise RejectError(
                "path_outside_csv_dir",
                f"image path {image!r} is absolute but --csv-pattern uses {{relstem}}. Use {{stem}} or make image paths relative",
            )
        rel_parts = [*p.parts[:-1], stem] if p.parts else []
        fields["relstem"] = str(PurePosixPath(*rel_parts)) if rel_parts else ""
    rel = pattern.format(**fields)
    rel_p = pure_image_path(rel)
    if rel_p.is_absolute() or rel_p.drive or ".." in rel_p.parts:
        raise RejectError(
            "path_outside_csv_dir",
            f"CSV path {rel!r} for image {image!r} leaves --csv-dir. Only files inside --csv-dir are read: fix the image path or --csv-pattern",
        )
    return csv_dir.joinpath(*rel_p.parts)
