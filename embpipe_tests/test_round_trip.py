"""The round trip: a question passes when its positive is in the base retriever's top k over all chunks."""

import numpy as np
import pandas as pd

from embpipe.core.synthesis.questions import Screening, round_trip_hits, screen_questions

CHUNK_VECTORS = np.eye(3, dtype=np.float32)
CHUNK_EMBEDDINGS = pd.DataFrame({"chunk_id": ["c0", "c1", "c2"], "embedding": list(CHUNK_VECTORS)})


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_a_question_passes_when_its_positive_ranks_within_k():
    questions = np.stack([unit([0.9, 0.1, 0.0]), unit([0.1, 0.0, 0.9]), unit([0.6, 0.5, 0.0])])
    positives = [["c0"], ["c1"], ["c1"]]
    assert round_trip_hits(questions, CHUNK_VECTORS, ["c0", "c1", "c2"], positives, k=1).tolist() == [
        True,
        False,
        False,
    ]
    assert round_trip_hits(questions, CHUNK_VECTORS, ["c0", "c1", "c2"], positives, k=2).tolist() == [
        True,
        False,
        True,
    ]


def test_screening_measures_the_round_trip_and_drops_failures_only_when_asked():
    frame = pd.DataFrame({"query_id": ["q0", "q1"], "text": ["a", "b"], "positive_chunk_ids": [["c0"], ["c1"]]})
    vectors = np.stack([unit([1.0, 0.0, 0.0]), unit([0.0, 0.1, 1.0])])
    kept, measured = screen_questions(frame, vectors, CHUNK_EMBEDDINGS, Screening(round_trip_k=1))
    assert list(kept["query_id"]) == ["q0", "q1"] and measured == {"round_trip_pass_rate": 0.5, "round_trip_k": 1}
    kept, _ = screen_questions(frame, vectors, CHUNK_EMBEDDINGS, Screening(round_trip_k=1, round_trip_filter=True))
    assert list(kept["query_id"]) == ["q0"]
