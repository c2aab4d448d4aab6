"""Plain text and a title from Markdown, HTML, text and PDF bytes.

HTML keeps one paragraph per block element (``p``, headings, list items, table cells, ``pre``), so
paragraph chunking sees the author's paragraphs. Malformed HTML is parsed leniently.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

BLOCK_TAGS = ["p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "pre", "td", "th", "blockquote", "dt", "dd"]

Decoder = Callable[[bytes], str]


def html_to_text(html: str) -> str:
    """Text of an HTML page, one blank-line-separated paragraph per innermost block element."""
    from bs4 import BeautifulSoup, NavigableString

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head", "nav", "title"]):
        tag.decompose()
    paragraphs: list[list[str]] = []
    current_block = object()
    for node in soup.descendants:
        if not isinstance(node, NavigableString) or not node.strip():
            continue
        block = node.find_parent(BLOCK_TAGS)
        if block is not current_block:
            paragraphs.append([])
            current_block = block
        paragraphs[-1].append(node.strip())
    return "\n\n".join(re.sub(r"\s+", " ", " ".join(p)) for p in paragraphs)


def pdf_to_text(raw: bytes) -> str:
    """Text of a PDF; ``ValueError`` when ``pypdf`` is missing or the file is not a valid PDF."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError as error:
        raise ValueError("PDF support needs pypdf: pip install 'embpipe[pdf]'") from error
    try:
        reader = PdfReader(io.BytesIO(raw))
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"invalid PDF: {error}") from error


def extract_text(suffix: str, raw: bytes, decode: Decoder) -> str:
    """The text of a file by its suffix; HTML and PDF are converted, Markdown and text kept."""
    if suffix == ".pdf":
        return pdf_to_text(raw)
    text = decode(raw)
    if suffix in {".html", ".htm"}:
        return html_to_text(text)
    return text.replace("\r\n", "\n")


def title_of(suffix: str, raw: bytes, text: str, decode: Decoder) -> str:
    """A document title: HTML ``<title>``, a Markdown ``# heading``, else the first line of text with a word in it
    (a line of bullets or rules alone is skipped, and a heading's or bullet's marks are cut)."""
    if suffix in {".html", ".htm"}:
        match = re.search(r"<title[^>]*>(.*?)</title>", decode(raw), re.IGNORECASE | re.DOTALL)
        if match and match.group(1).strip():
            return re.sub(r"\s+", " ", match.group(1)).strip()
    for line in text.splitlines():
        candidate = line.strip().lstrip("#*-•").strip()
        if re.search(r"[^\W_]{2}", candidate):
            return candidate[:200]
    return ""
