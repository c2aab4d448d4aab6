"""requirements.lock installs under pip's hash-checking mode whatever newer releases the index holds."""

from __future__ import annotations

import re
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)(?:\[(?P<extras>[^\]]*)\])?==(?P<version>\S+)")


def locked_pins(text: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """(name, extras, version, hashes) for every pinned requirement of a pip-compile lock."""
    pins: list[tuple[str, str, str, frozenset[str]]] = []
    for block in re.split(r"\n(?=\S)", text):
        match = PIN.match(block)
        if match:
            hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
            pins.append((match["name"].lower(), match["extras"] or "", match["version"], hashes))
    return pins


def test_every_locked_requirement_is_pinned_with_hashes():
    pins = locked_pins(LOCK.read_text())
    assert len(pins) > 150
    assert [name for name, _, _, hashes in pins if not hashes] == []


def test_a_package_locked_with_extras_is_pinned_again_without_them_at_the_same_version_and_hashes():
    pins = locked_pins(LOCK.read_text())
    plain = {name: (version, hashes) for name, extras, version, hashes in pins if not extras}
    with_extras = [(name, version, hashes) for name, extras, version, hashes in pins if extras]
    assert "sentence-transformers" in {name for name, _, _ in with_extras}
    missing = [name for name, version, hashes in with_extras if plain.get(name) != (version, hashes)]
    assert missing == []
