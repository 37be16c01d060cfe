"""Reading documents from files for `manage.py enqueue`: folders, globs, JSON Lines."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.utils.dateparse import parse_datetime

from pipeline.queue import IncomingDocument, InvalidDocument, validate


@dataclass(frozen=True, slots=True)
class Rejected:
    where: str
    reason: str


def expand(paths: list[str]) -> Iterator[Path]:
    """Files named by `paths`: files as given, folders recursively, globs expanded."""
    seen: set[Path] = set()
    for raw in paths:
        matches = [Path(p) for p in sorted(glob.glob(raw, recursive=True))] if glob.has_magic(raw) else [Path(raw)]
        if not matches:
            raise FileNotFoundError(f"{raw}: no such file, folder or glob match")
        for match in matches:
            if not match.exists():
                raise FileNotFoundError(f"{raw}: no such file or folder")
            files = sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() else [match]
            for f in files:
                if any(part.startswith(".") for part in f.parts if part not in (".", "..")):
                    continue  # hidden files and folders (.git, .DS_Store)
                resolved = f.resolve()
                if resolved not in seen:
                    seen.add(resolved)
                    yield f


def document_id(path: Path, base: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(base.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def read(path: Path, base: Path) -> Iterator[IncomingDocument | Rejected]:
    """Documents in one file (a .jsonl file holds one per line), or why they were rejected."""
    if path.suffix == ".jsonl":
        yield from _read_jsonl(path)
        return
    data = path.read_bytes()
    if b"\x00" in data:
        yield Rejected(str(path), "binary file (contains NUL bytes)")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield Rejected(str(path), f"not UTF-8 text (invalid byte at offset {exc.start})")
        return
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    yield _checked(
        IncomingDocument(document_id(path, base), text, modified, {"path": document_id(path, base)}), str(path)
    )


def _read_jsonl(path: Path) -> Iterator[IncomingDocument | Rejected]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield Rejected(where, "line is not UTF-8")
                continue
            except json.JSONDecodeError as exc:
                yield Rejected(where, f"invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(item, dict):
                yield Rejected(where, "each line must be a JSON object {id, text, modified_at?, metadata?}")
                continue
            missing = [k for k in ("id", "text") if k not in item]
            if missing:
                yield Rejected(where, f"missing field(s): {', '.join(missing)}")
                continue
            # str() would turn null into the id "None"; integers are accepted as the API does.
            if isinstance(item["id"], bool) or not isinstance(item["id"], (str, int)):
                yield Rejected(where, "id must be a string (or an integer)")
                continue
            modified = None
            if item.get("modified_at"):
                modified = parse_datetime(str(item["modified_at"]))
                if modified is None:
                    yield Rejected(where, f"modified_at {item['modified_at']!r} is not an ISO 8601 date-time")
                    continue
            metadata = item.get("metadata") or {}
            if not isinstance(metadata, dict) or not isinstance(item["text"], str):
                yield Rejected(where, "text must be a string and metadata an object")
                continue
            yield _checked(IncomingDocument(str(item["id"]), item["text"], modified, metadata), where)


def _checked(doc: IncomingDocument, where: str) -> IncomingDocument | Rejected:
    try:
        validate(doc)
    except InvalidDocument as exc:
        return Rejected(where, str(exc))
    return doc
