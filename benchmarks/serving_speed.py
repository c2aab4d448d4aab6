"""Encode speed of PyTorch vs ONNX (fp32, int8) and the server's single-text latency, on this machine.

    python benchmarks/serving_speed.py                          # the packaged base model
    python benchmarks/serving_speed.py --model data/models/embedding_model
    python benchmarks/serving_speed.py --model embeddinggemma-300m --tag embeddinggemma   # a fetched base

Exports the model to a temporary folder, checks parity, times encoding of ``--texts`` chunk-sized passages
(batch 32) with each backend, then starts ``embpipe serve``'s app with the served variant and sends
``--requests`` single short-text requests over HTTP, one at a time (as queries, for a model with prompts). Writes
``benchmarks/results/serving-speed[-<tag>].json``.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHORT_TEXTS = [
    "How do I rotate the backup encryption key?",
    "alert H-052 chassis fan",
    "SMTP 535 authentication failed after relay change",
    "storage pool read-only at 95 percent",
]


def passages(count: int) -> list[str]:
    """Chunk-sized passages from the sample corpus, repeated to ``count``."""
    from embpipe.core.ingest.chunking import ChunkingParams, chunk_text
    from embpipe.core.ingest.documents import read_folder

    documents = read_folder(REPO / "data" / "sample").documents
    texts = [c.text for d in documents for c in chunk_text(d.text, ChunkingParams())]
    return [texts[i % len(texts)] for i in range(count)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_latencies(folder: Path, requests: int) -> dict[str, float]:
    """p50/p95/mean milliseconds of single-text POST /v1/embeddings requests."""
    import httpx
    import uvicorn

    from embpipe.serving.app import create_app
    from embpipe.serving.encoders import load_encoder

    encoder = load_encoder(folder.parent, str(folder))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(encoder), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    timings = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for number in range(requests + 10):
            body = {"model": "embpipe", "input": SHORT_TEXTS[number % len(SHORT_TEXTS)]}
            if encoder.prompts:  # a model with query and document prompts is asked for queries, as a search does
                body["input_type"] = "query"
            started = time.perf_counter()
            response = client.post("/v1/embeddings", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if number >= 10:  # warm-up requests are not counted
                timings.append(elapsed)
    server.should_exit = True
    thread.join(timeout=10)
    timings.sort()
    return {
        "backend": encoder.backend,
        "requests": len(timings),
        "p50_ms": statistics.median(timings),
        "p95_ms": timings[int(0.95 * (len(timings) - 1))],
        "mean_ms": statistics.fmean(timings),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="sentence-transformers folder (default: the packaged base model)")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tag", default="", help="results file suffix (another model than the packaged base)")
    args = parser.parse_args(argv)

    from embpipe.core.base_models import base_model_path
    from embpipe.core.deploy.export_checks import verify_export
    from embpipe.core.deploy.onnx_export import export_onnx
    from embpipe.core.embedding import load_model, packaged_base_model

    model_path = base_model_path(args.model) if args.model else packaged_base_model()
    model = load_model(model_path, 256, "cpu")
    texts = passages(args.texts)
    with tempfile.TemporaryDirectory() as staging:
        folder = export_onnx(model, Path(staging) / "onnx_model")
        report = verify_export(model, folder, texts[:64], texts, min_cosine=0.99)
        latency = server_latencies(folder, args.requests)
    result = {
        "model": model_path,
        "texts": args.texts,
        "encode": report.rows(),
        "served_variant": report.served,
        "server_single_text": latency,
    }
    out = REPO / "benchmarks" / "results" / f"serving-speed{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
