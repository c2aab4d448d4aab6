"""Reading folders: every unusable file is recorded with a reason, and the rest is read."""

from __future__ import annotations

import dataclasses
import os

import pytest

from embpipe.core.ingest.documents import doc_id_for, manifest_hash, read_folder
from embpipe.core.ingest.text_extraction import html_to_text
from embpipe_tests.conftest import SAMPLE_DIR


def reasons(result) -> dict[str, str]:
    return {r.path: r.reason for r in result.rejected}


def test_sample_corpus_reads_completely():
    result = read_folder(SAMPLE_DIR)
    assert len(result.documents) == 48
    assert result.rejected == []
    assert {d.path.rsplit(".", 1)[1] for d in result.documents} == {"md", "txt", "html"}
    assert all(d.title and d.text.strip() for d in result.documents)


def test_bad_files_are_rejected_with_reasons(tmp_path):
    (tmp_path / "good.md").write_text("# Title\n\nSome useful text.")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("   \n\n\t ")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02abc")
    (tmp_path / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "big.txt").write_text("x" * 5000)
    (tmp_path / "copy.md").write_text("# Title\n\nSome useful text.")
    (tmp_path / "empty.pdf").write_bytes(b"")
    os.symlink(tmp_path / "loop_a.txt", tmp_path / "loop_b.txt")
    os.symlink(tmp_path / "loop_b.txt", tmp_path / "loop_a.txt")
    result = read_folder(tmp_path, max_bytes=4000)
    why = reasons(result)
    assert [d.path for d in result.documents] == ["copy.md"]
    assert "empty" in why["empty.txt"]
    assert "whitespace" in why["blank.txt"]
    assert "binary" in why["binary.txt"]
    assert "UTF-8" in why["latin1.txt"]
    assert "unsupported" in why["image.png"]
    assert "too large" in why["big.txt"]
    assert "duplicate content of copy.md" in why["good.md"]
    assert "empty" in why["empty.pdf"]
    assert "not a regular file" in why["loop_a.txt"] and "not a regular file" in why["loop_b.txt"]


def test_utf16_with_bom_is_read(tmp_path):
    (tmp_path / "note.txt").write_bytes("Note\n\nUnicode text: naïve".encode("utf-16"))
    result = read_folder(tmp_path)
    assert result.documents[0].text.endswith("naïve")


def test_unreadable_file_is_rejected(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    (tmp_path / "open.txt").write_text("visible")
    original = type(path).read_bytes

    def deny(self):
        if self.name == "secret.txt":  # root ignores chmod, so the operating system's refusal is simulated
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(type(path), "read_bytes", deny)
    result = read_folder(tmp_path)
    assert reasons(result)["secret.txt"] == "unreadable: Permission denied"
    assert [d.path for d in result.documents] == ["open.txt"]


def test_malformed_html_keeps_paragraphs():
    text = html_to_text("<html><body><h1>Head</h1><p>One <b>bold</b><p>Two</div></span>")
    assert text.split("\n\n") == ["Head", "One bold", "Two"]


def test_beir_corpus_lines_become_documents_and_an_untitled_one_takes_its_first_line(tmp_path):
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "p1", "title": "T", "text": "alpha"}\n'
        '{"_id": "p2", "title": " ", "text": "\\n* \\n * Fan alert H-052\\nbeta"}\n'
    )
    result = read_folder(tmp_path)
    assert [(d.doc_id, d.title) for d in result.documents] == [("p1", "T"), ("p2", "Fan alert H-052")]
    assert [d.text for d in result.documents] == ["alpha", "\n* \n * Fan alert H-052\nbeta"]


def test_missing_folder_error_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_folder(tmp_path / "nope")


def test_ids_and_manifest_are_stable_and_content_sensitive(tmp_path):
    (tmp_path / "a.txt").write_text("alpha text")
    first = read_folder(tmp_path).documents
    assert first[0].doc_id == doc_id_for("a.txt")
    assert manifest_hash(first) == manifest_hash(read_folder(tmp_path).documents)
    (tmp_path / "a.txt").write_text("alpha text, edited")
    assert manifest_hash(first) != manifest_hash(read_folder(tmp_path).documents)
    retitled = [dataclasses.replace(first[0], title="another title")]
    assert manifest_hash(first) != manifest_hash(retitled)  # chunks are embedded behind their title


def test_beir_folder_yields_only_its_corpus(tmp_path):
    (tmp_path / "corpus.jsonl").write_text('{"_id": "p1", "text": "alpha"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "secret benchmark question"}\n')
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tp1\t1\n")
    result = read_folder(tmp_path)
    assert [d.doc_id for d in result.documents] == ["p1"]
    assert "not a BEIR corpus.jsonl" in reasons(result)["queries.jsonl"]


def test_a_single_file_can_be_the_source(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    assert [d.path for d in read_folder(tmp_path / "b.txt").documents] == ["b.txt"]


@pytest.mark.parametrize("contents", [{}, {"blob.bin": b"\x00\x01\x02", "notes.md": b"   \n"}])
def test_a_folder_without_a_readable_document_stops_at_documents_saying_why(tmp_path, data_dir, contents):
    from dagster import AssetKey, materialize

    from embpipe.definitions import all_assets, default_resources

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    result = materialize(
        all_assets,
        selection=[AssetKey("documents"), AssetKey("rejected_documents")],
        resources=default_resources(),
        run_config={"ops": {"read_documents": {"config": {"folder": str(folder)}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert f"No readable document in {folder}" in error.message and "--documents" in error.message
    assert ("no files" in error.message) == (not contents)


def test_no_chunk_long_enough_names_the_setting():
    import pandas as pd

    from embpipe.core.synthesis.questions import select_chunks

    chunks = pd.DataFrame({"chunk_id": ["a", "b"], "doc_id": ["d", "d"], "n_tokens": [5, 12]})
    with pytest.raises(ValueError, match=r"No chunk has 20 tokens or more \(2 chunks, the longest 12 tokens\)"):
        select_chunks(chunks, 10, 20, 42)
