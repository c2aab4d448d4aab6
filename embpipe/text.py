"""Plain-text helpers shared by every layer (chunking, the fake test teacher): sentence splitting.

Example:
    >>> split_sentences("Fan 3 failed.  Replace it now! Then reboot.")
    ['Fan 3 failed.', 'Replace it now!', 'Then reboot.']
"""

import re

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after ``.``, ``!`` or ``?`` before a capital or digit)."""
    return [s.strip() for s in SENTENCE_END.split(re.sub(r"\s+", " ", text)) if s.strip()]
