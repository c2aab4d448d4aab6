"""Reading a documents folder into rows, with every file that cannot be used recorded and skipped.

Supported: ``.txt``, ``.md``, ``.html``/``.htm``, ``.pdf`` (when ``pypdf`` is installed) and BEIR
``corpus.jsonl`` files (one document per line, ``_id`` kept as the document id). Other JSON-lines files —
a BEIR folder's ``queries.jsonl`` among them — are rejected, so pointing the pipeline at a benchmark folder
never feeds its queries into training. Text must be UTF-8 (a UTF-8
or UTF-16 byte-order mark is honoured); anything else is rejected with the reason, never guessed.

Example:
    >>> from embpipe.core.ingest.documents import read_folder
    >>> result = read_folder("data/sample")  # doctest: +SKIP
    >>> len(result.documents), len(result.rejected)  # doctest: +SKIP
    (20, 0)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from embpipe.core.ingest.text_extraction import extract_text, title_of

SUPPORTED_SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl"}
BEIR_CORPUS_NAME = "corpus.jsonl"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Document:
    """One readable document."""

    doc_id: str
    path: str
    content_sha256: str
    title: str
    text: str


@dataclass(frozen=True)
class Rejection:
    """A file (or corpus line) that was skipped, and why."""

    path: str
    reason: str


@dataclass
class FolderReadResult:
    """The documents read from a folder and the files rejected on the way."""

    documents: list[Document] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def doc_id_for(relative_path: str) -> str:
    """Stable document id: the first 16 hex digits of the sha256 of the relative path."""
    return hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:16]


def list_files(folder: Path) -> tuple[list[Path], list[Rejection]]:
    """Every regular file under ``folder`` (symlinks to files followed, directory links not), sorted."""
    files: list[Path] = []
    problems: list[Rejection] = []
    for root, dirs, names in os.walk(
        folder,
        followlinks=False,
        onerror=lambda e: problems.append(Rejection(str(e.filename), f"cannot list directory: {e.strerror}")),
    ):
        dirs.sort()
        for name in sorted(names):
            files.append(Path(root) / name)
    return files, problems


def decode_text(raw: bytes) -> str:
    """Decode UTF-8 (with or without BOM) or BOM-marked UTF-16; ``ValueError`` for anything else."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if b"\x00" in raw[:8192]:
        raise ValueError("binary file (NUL bytes); only text, HTML, Markdown, PDF and corpus.jsonl are read")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text (byte {error.start}); convert the file to UTF-8") from error


def read_file_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; ``ValueError`` with the reason when it is not a readable regular file of sane size."""
    try:
        if not path.is_file():
            raise ValueError("not a regular file (broken symlink, socket or device)")
        size = path.stat().st_size
        if size == 0:
            raise ValueError("empty file (0 bytes)")
        if size > max_bytes:
            raise ValueError(f"too large ({size} bytes > max_bytes {max_bytes}); split it or raise max_bytes")
        return path.read_bytes()
    except OSError as error:
        raise ValueError(f"unreadable: {error.strerror or error}") from error


def documents_from_file(path: Path, relative: str, max_bytes: int) -> list[Document]:
    """The documents one file holds (one, or one per line of a BEIR corpus)."""
    raw = read_file_bytes(path, max_bytes)
    if path.suffix.lower() == ".jsonl":
        return documents_from_jsonl(decode_text(raw), relative)
    text = extract_text(path.suffix.lower(), raw, decode_text)
    if not text.strip():
        raise ValueError("no text (empty or whitespace only after extraction)")
    title = title_of(path.suffix.lower(), raw, text, decode_text) or path.stem
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return [Document(doc_id_for(relative), relative, digest, title, text)]


def documents_from_jsonl(content: str, relative: str) -> list[Document]:
    """Documents of a BEIR ``corpus.jsonl``: ``_id``, optional ``title``, ``text``. A row without a title takes its
    text's first line, as a text file does: every chunk is embedded behind its document's title, and a corpus
    whose titles sit in the text's first line (techqa's) would otherwise give its later chunks no title at all."""
    documents = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc_id, text = str(row["_id"]), str(row.get("text") or "")
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"line {number} is not a BEIR corpus row with _id and text: {error}") from error
        if text.strip():
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            title = str(row.get("title") or "").strip() or title_of(".txt", b"", text, decode_text)
            documents.append(Document(doc_id, f"{relative}#{doc_id}", digest, title, text))
    return documents


def read_folder(folder: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> FolderReadResult:
    """Read every supported file under ``folder`` (or the one file it names); unusable files and duplicates
    become rejections."""
    root = Path(folder)
    if root.is_file():
        root, files, problems = root.parent, [root], []
    elif root.is_dir():
        files, problems = list_files(root)
    else:
        raise ValueError(f"Documents folder {root.resolve()} does not exist; set the documents folder config.")
    result = FolderReadResult(rejected=problems)
    seen: dict[str, str] = {}
    for path in files:
        relative = path.relative_to(root).as_posix()
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            result.rejected.append(Rejection(relative, f"unsupported file type {path.suffix or '(none)'}"))
            continue
        if path.suffix.lower() == ".jsonl" and path.name != BEIR_CORPUS_NAME:
            result.rejected.append(Rejection(relative, f"JSON-lines file is not a BEIR {BEIR_CORPUS_NAME}"))
            continue
        try:
            documents = documents_from_file(path, relative, max_bytes)
        except (ValueError, UnicodeDecodeError) as error:
            result.rejected.append(Rejection(relative, str(error)))
            continue
        for document in documents:
            if document.content_sha256 in seen:
                result.rejected.append(
                    Rejection(document.path, f"duplicate content of {seen[document.content_sha256]}")
                )
                continue
            seen[document.content_sha256] = document.path
            result.documents.append(document)
    return result


def manifest_hash(documents: list[Document]) -> str:
    """A content hash of the document manifest (path, content hash, title): the ``documents`` data version. The title
    is in it because every chunk is embedded behind it: a changed title is a changed document downstream."""
    digest = hashlib.sha256()
    for document in sorted(documents, key=lambda d: d.path):
        digest.update(f"{document.path}\0{document.content_sha256}\0{document.title}\n".encode())
    return digest.hexdigest()[:24]


def folder_fingerprint(folder: str | Path) -> str:
    """A cheap hash of a folder's file list, sizes and modification times: changes when a file is added,
    changed or removed (used by the documents sensor; the ``documents`` asset hashes contents)."""
    root = Path(folder)
    if not root.exists():
        return "missing"
    files = [root] if root.is_file() else list_files(root)[0]
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(root.parent if root.is_file() else root)}\0{stat.st_size}\0".encode())
        digest.update(f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def require_documents(result: FolderReadResult, folder: str | Path) -> None:
    """Stop with the cause and the fix when ``folder`` gave no readable document (nothing later can run).

    Example:
        >>> require_documents(FolderReadResult(), "empty/")
        Traceback (most recent call last):
        ...
        ValueError: No readable document in empty/ (no files). Add .htm, .html, .jsonl, .markdown, .md, .pdf or \
.txt files there, or point --documents at another folder.
    """
    if result.documents:
        return
    reasons = Counter(r.reason.split(":")[0] for r in result.rejected)
    found = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common(4)) or "no files"
    kinds = ", ".join(sorted(s.lstrip(".") for s in SUPPORTED_SUFFIXES))
    *first, last = kinds.split(", ")
    raise ValueError(
        f"No readable document in {folder} ({found}). Add .{', .'.join(first)} or .{last} files there, or point "
        "--documents at another folder."
    )
