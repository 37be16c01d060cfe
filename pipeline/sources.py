"""Documents from files for `manage.py enqueue`: only regular files opened, never more than the limit read."""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.dateparse import parse_datetime

from embedportal.api.strict import JSONInputError, json_error, loads
from pipeline.queue import IncomingDocument, InvalidDocument, duplicate_id, validate


@dataclass(frozen=True, slots=True)
class Rejected:
    where: str
    reason: str


def expand(paths: list[str], skipped: Counter[str] | None = None) -> Iterator[Path]:
    """Files named by `paths` (files as given, hidden or not; folders walked; globs expanded). Walks and
    globs skip hidden entries, special files and symlinked folders, counted in `skipped`; the portal's
    data directory and secret files are never yielded."""
    skipped = Counter() if skipped is None else skipped
    seen: set[Path] = set()
    private = _private_paths()
    for raw in paths:
        if glob.has_magic(raw):
            found = [Path(p) for p in sorted(glob.glob(raw, recursive=True))]
            matches = [m for m in found if not _hidden_below(m, raw)]
            if len(matches) < len(found):
                skipped["hidden"] += len(found) - len(matches)
        else:
            matches = [Path(raw)]
        if not matches:
            raise FileNotFoundError(f"{raw}: no such file, folder or glob match")
        for match in matches:
            if not match.exists():
                raise FileNotFoundError(f"{raw}: {_missing(match)}")
            for f in _walk(match, skipped, private) if match.is_dir() else [match]:
                resolved = f.resolve()
                if _is_private(resolved, private):
                    skipped[PRIVATE] += 1
                elif resolved not in seen:
                    seen.add(resolved)
                    yield f


def _missing(path: Path) -> str:
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop (too many levels of symbolic links)"
    return "a broken symlink (its target does not exist)" if path.is_symlink() else "no such file or folder"


def _hidden_below(match: Path, pattern: str) -> bool:
    """Whether a part of `match` past the glob's leading parts without a wildcard (the user named those) is hidden."""
    parts = Path(pattern).parts
    named = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return any(part.startswith(".") and part not in (".", "..") for part in match.parts[named:])


def _private_paths() -> list[Path]:
    """The data directory and every secret file mounted for the portal (the NAME_FILE variables)."""
    files = [Path(v) for k, v in os.environ.items() if k.endswith("_FILE") and v and Path(v).is_file()]
    return [Path(settings.DATA_DIR).resolve(), *(f.resolve() for f in files)]


def _is_private(path: Path, private: list[Path]) -> bool:
    return any(path == p or path.is_relative_to(p) for p in private)


PRIVATE = "the portal's data directory or secret files (never read)"


def _walk(root: Path, skipped: Counter[str], private: list[Path]) -> list[Path]:
    def kept(path: Path, folder: bool) -> bool:
        if path.name.startswith("."):
            skipped["hidden"] += 1
        elif folder and path.is_symlink():
            skipped["symlinked folder (not followed)"] += 1
        elif folder and _is_private(path.resolve(), private):
            skipped[PRIVATE] += 1
        elif not folder and not path.is_file():  # a stat, never an open: safe on FIFOs and devices
            skipped["not a regular file"] += 1
        else:
            return True
        return False

    files = []
    for folder, dirnames, filenames in os.walk(root, onerror=lambda error: skipped.update(["unreadable folder"])):
        dirnames[:] = [name for name in dirnames if kept(Path(folder, name), folder=True)]
        files += [Path(folder, name) for name in filenames if kept(Path(folder, name), folder=False)]
    return sorted(files)


def describe_skips(skipped: Counter[str]) -> str:
    """`Skipped 3 while walking folders and globs: 2 hidden, 1 not a regular file.`"""
    reasons = ", ".join(f"{count} {reason}" for reason, count in skipped.most_common())
    return f"Skipped {sum(skipped.values())} while walking folders and globs: {reasons}."


def document_id(path: Path, base: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(base.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


class _Unreadable(Exception):
    pass


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
}


def _open_regular(path: Path) -> BinaryIO:
    """Open `path` for reading if it is a regular file, without ever blocking."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _Unreadable(_not_regular(mode))
        # O_NONBLOCK: a path turned FIFO after the stat does not wait for a writer (fstat refuses it).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _Unreadable(f"cannot read it: {exc.strerror}") from None
    fh = os.fdopen(fd, "rb")
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        fh.close()
        raise _Unreadable(_not_regular(mode))
    return fh


def text_lines(path: Path, limit: int) -> Iterator[str]:
    """The UTF-8 lines of the regular file `path`, each read at most `limit` bytes deep: a FIFO is never
    waited on and an endless line (/dev/zero) never held. A ValidationError names what is wrong."""
    try:
        fh = _open_regular(path)
    except _Unreadable as exc:
        raise ValidationError(str(exc)) from None
    with fh:
        for number, raw in enumerate(iter(lambda: fh.readline(limit + 1), b""), 1):
            if len(raw) > limit:
                raise ValidationError(f"line {number} is over the limit of {limit} bytes")
            if b"\x00" in raw:
                raise ValidationError(f"line {number}: binary (a NUL byte)")
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError(f"line {number}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _not_regular(mode: int) -> str:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return f"{kind}, not a regular file; name text files, .jsonl files or folders"


def read(path: Path, base: Path, contextual: bool = False) -> Iterator[IncomingDocument | Rejected]:
    """Documents in one file (a .jsonl file holds one per line), or why they were rejected (`contextual`:
    for a collection with contextual chunks, whose front matter is metadata)."""
    try:
        fh = _open_regular(path)
    except _Unreadable as exc:
        yield Rejected(str(path), str(exc))
        return
    with fh:
        if path.suffix == ".jsonl":
            yield from _read_jsonl(fh, path, contextual)
        else:
            yield _read_text(fh, path, base, contextual)


def _read_text(fh: BinaryIO, path: Path, base: Path, contextual: bool) -> IncomingDocument | Rejected:
    limit = 4 * settings.EMBEDPORTAL_MAX_DOCUMENT_CHARS  # UTF-8: at most 4 bytes a character
    info = os.fstat(fh.fileno())
    too_big = f"over the limit of {limit} bytes (4 bytes a character of EMBEDPORTAL_MAX_DOCUMENT_CHARS); split the file"
    if info.st_size > limit:
        return Rejected(str(path), f"file is {info.st_size} bytes, {too_big}")
    data = fh.read(limit + 1)  # at most one byte past the limit, even if the file grows meanwhile
    if len(data) > limit:
        return Rejected(str(path), f"file grew while being read, {too_big}")
    if b"\x00" in data:
        return Rejected(str(path), "binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(str(path), f"not UTF-8 text (invalid byte at offset {exc.start})")
    modified = datetime.fromtimestamp(info.st_mtime, tz=UTC)
    doc_id = document_id(path, base)
    return _checked(IncomingDocument(doc_id, text, modified, {"path": doc_id}), str(path), contextual)


def _skip_line(fh: BinaryIO) -> int:
    """Read past the rest of the current line, piece by piece; the bytes skipped."""
    skipped = 0
    while piece := fh.readline(1 << 20):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def _read_jsonl(fh: BinaryIO, path: Path, contextual: bool) -> Iterator[IncomingDocument | Rejected]:
    # JSON may write a character as a 6-byte \uXXXX escape; 1 MiB more for the id and metadata.
    limit = 6 * settings.EMBEDPORTAL_MAX_DOCUMENT_CHARS + (1 << 20)
    # A file is one submission, like an API request: an id twice in it is refused the same way.
    seen: set[str] = set()
    # readline(limit + 1): a line is never held past the limit, however long it is.
    for lineno, raw in enumerate(iter(lambda: fh.readline(limit + 1), b""), 1):
        where = f"{path}:{lineno}"
        if len(raw) > limit:
            size = len(raw) + _skip_line(fh)
            yield Rejected(
                where,
                f"line is {size} bytes, over the limit of {limit} bytes (from EMBEDPORTAL_MAX_DOCUMENT_CHARS); "
                "split the document",
            )
            continue
        # A byte order mark (editors on Windows write one) starts the file, not the first document.
        item = _jsonl_item(raw.removeprefix(b"\xef\xbb\xbf") if lineno == 1 else raw, where, contextual)
        if isinstance(item, IncomingDocument):
            if item.external_id in seen:
                item = Rejected(where, duplicate_id(item.external_id))
            else:
                seen.add(item.external_id)
        if item is not None:
            yield item


def _jsonl_item(raw: bytes, where: str, contextual: bool) -> IncomingDocument | Rejected | None:
    if not raw.strip():
        return None
    try:
        item = loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Rejected(where, "line is not UTF-8")
    except JSONInputError as exc:
        return Rejected(where, str(exc))
    except ValueError as exc:
        return Rejected(where, f"invalid JSON ({json_error(exc)})")
    if not isinstance(item, dict):
        return Rejected(where, "each line must be a JSON object {id, text, modified_at?, metadata?}")
    missing = [k for k in ("id", "text") if k not in item]
    if missing:
        return Rejected(where, f"missing field(s): {', '.join(missing)}")
    # str() would turn null into the id "None"; integers are accepted as the API does.
    if isinstance(item["id"], bool) or not isinstance(item["id"], (str, int)):
        return Rejected(where, "id must be a string (or an integer)")
    # Only null or no key means "no time" (as in the API): 0 or "" read as none would be a silent guess.
    modified = None
    if item.get("modified_at") is not None:
        try:
            modified = parse_datetime(str(item["modified_at"]))
        except ValueError as exc:  # well formed, no such date: 2026-13-45
            return Rejected(where, f"modified_at {item['modified_at']!r} is not a valid date-time ({exc})")
        if modified is None:
            return Rejected(where, f"modified_at {item['modified_at']!r} is not an ISO 8601 date-time")
    metadata = {} if item.get("metadata") is None else item["metadata"]
    if not isinstance(metadata, dict) or not isinstance(item["text"], str):
        return Rejected(where, "text must be a string and metadata an object")
    return _checked(IncomingDocument(str(item["id"]), item["text"], modified, metadata), where, contextual)


def _checked(doc: IncomingDocument, where: str, contextual: bool) -> IncomingDocument | Rejected:
    try:
        validate(doc, contextual)
    except InvalidDocument as exc:
        return Rejected(where, str(exc))
    return doc
