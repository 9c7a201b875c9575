"""Map an image path from a record to its CSV under --csv-dir, and refuse anything that leaves it.

Image paths are usually absolute paths from another machine (POSIX or Windows); only their name
matters: ``/home/u/x.PV.jpg`` and ``C:\\data\\x.PV.png`` both map to ``CSV_DIR/x.PV.csv`` with the
default pattern. The CSV path must stay inside --csv-dir: here lexically (no '..', not absolute);
the read itself (safeio.read_confined) walks the path one component at a time without following a
link out of --csv-dir, so a path swapped for a symlink after this check is still refused.

Also the two rules every command's outputs obey, checked before anything is read: an output is never
one of the inputs (`refuse_overwriting_inputs`), and a dataset name is a plain file name
(`check_dataset_name`), so NAME.jsonl and its siblings land in the output folder and nowhere else.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Iterable

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
    """Fail early (InputError, exit 2) on a --csv-pattern that cannot name a file: unknown fields, a
    format spec or conversion (`{stem:d}`, `{stem:>20000000}`, `{stem!r}`), or one that fails on a
    dummy image; after this every record formats it the same way."""
    valid = ", ".join("{%s}" % f for f in PATTERN_FIELDS)
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise InputError(f"--csv-pattern {pattern!r}: {exc}. Use fields like {{stem}}.csv") from None
    fields = {f for _, f, _, _ in parsed if f is not None}
    unknown = fields - set(PATTERN_FIELDS)
    if unknown or not fields:
        raise InputError(f"--csv-pattern {pattern[:100]!r}: unknown or missing fields {sorted(unknown)[:5]}; valid fields: {valid}")
    styled = [f for _, f, spec, conv in parsed if f is not None and (spec or conv)]
    if styled:
        raise InputError(f"--csv-pattern {pattern[:100]!r}: {{{styled[0]}}} has a format spec or conversion, which a file name "
                         f"cannot use. Write the plain field, e.g. {{{styled[0]}}}.csv")
    try:
        pattern.format(**{f: "x" for f in PATTERN_FIELDS})
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise InputError(f"--csv-pattern {pattern[:100]!r}: {exc}. Use fields like {{stem}}.csv") from None


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


MAX_NAME_BYTES = 200  # a dataset name; its outputs add up to ~20 bytes of suffix under the usual 255-byte limit


def check_dataset_name(name: str, option: str = "--name") -> None:
    """InputError unless ``name`` is a plain file name (no separator, not '.'/'..', not absolute, no NUL,
    not empty, at most MAX_NAME_BYTES bytes in UTF-8): the outputs NAME.* stay in the output folder."""
    problem = None
    if not name or not name.strip():
        problem = "is empty"
    elif "\x00" in name:
        problem = "contains a NUL byte"
    elif "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        problem = "contains a path separator"
    elif name in (".", ".."):
        problem = "is a folder, not a file name"
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = f"is {len(name.encode('utf-8', 'surrogatepass'))} bytes long, over {MAX_NAME_BYTES}"
    if problem is not None:
        raise InputError(f"{option} {name[:60]!r}{'...' if len(name) > 60 else ''} {problem}: it names the output files "
                         "inside -o. Pass a plain file name such as 'gdsh' and choose the folder with -o")


def refuse_overwriting_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """InputError naming both paths when an output would replace an input: the same path, the same
    path after resolving links (realpath), or the same file (samefile: hard links, bind mounts)."""
    inputs = [Path(i) for i in inputs]
    real_inputs = [os.path.realpath(i) for i in inputs]
    for out in outputs:
        real_out = os.path.realpath(out)
        for inp, real_in in zip(inputs, real_inputs):
            same = os.path.abspath(out) == os.path.abspath(inp) or real_out == real_in
            if not same and os.path.exists(out) and os.path.exists(inp):
                try:
                    same = os.path.samefile(out, inp)
                except OSError:
                    same = False
            if same:
                raise InputError(
                    f"output {out} is the input {inp}: writing it would destroy the input, so nothing was read or written. "
                    "Pass another output path, -o folder or --name"
                )
