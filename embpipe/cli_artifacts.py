"""The commands that read or ship what a run produced: ``lineage``, ``serve``, ``export`` and ``sft``.

They are wired into the ``embpipe`` parser in ``embpipe.cli``; heavy imports stay inside each command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def command_lineage(args: argparse.Namespace) -> int:

    from embpipe.core.evaluation.lineage import rows_for_document, rows_for_query
    from embpipe.resources.io_managers import read_table, stored_table_path

    path = stored_table_path("training_lineage")
    if not path.is_file():
        print(f"{path} does not exist: run `embpipe run` first (it materializes training_lineage)", file=sys.stderr)
        return 2
    lineage = read_table(path, "training_lineage")
    rows = rows_for_document(lineage, args.document) if args.document else rows_for_query(lineage, args.query)
    if rows.empty:
        known = "documents" if args.document else "queries"
        print(f"no lineage for {args.document or args.query} ({lineage['doc_path'].nunique()} {known} known)")
        return 1
    if args.document:
        columns = ["query_id", "split", "role", "source", "round", "chunk_id", "query_text"]
        print(f"{rows['query_id'].nunique()} questions, {len(rows[rows.split == 'train'])} training rows:")
    else:
        columns = ["role", "source", "round", "chunk_id", "doc_id", "doc_path"]
        print(f"{args.query}: {rows['query_text'].iloc[0]} ({rows['split'].iloc[0]})")
    shown = rows[columns]
    print(shown.to_csv(index=False) if args.csv else shown.to_markdown(index=False))
    return 0


def command_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from embpipe.resources.io_managers import stored_model_path
    from embpipe.serving.app import ServerLimits, create_app
    from embpipe.serving.encoders import load_encoder

    if args.model and not Path(args.model).exists():
        print(f"{args.model} does not exist: pass a model folder (an `embpipe export` output or a trained model)",
              file=sys.stderr)  # fmt: skip
        return 2
    encoder = load_encoder(stored_model_path("embedding_model").parent, args.model, args.name)
    limits = ServerLimits(args.max_body_bytes, args.max_batch, args.max_input_chars)
    print(f"serving {encoder.name} ({encoder.backend}, {encoder.dimension} dims) on http://{args.host}:{args.port}/v1")
    uvicorn.run(create_app(encoder, limits), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def command_export(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import pandas as pd

    from embpipe.core.deploy.export_checks import verify_export
    from embpipe.core.deploy.onnx_export import export_onnx
    from embpipe.core.embedding import load_model
    from embpipe.resources.io_managers import stored_model_path

    source = args.model or str(stored_model_path("embedding_model"))
    if not Path(source).exists():
        print(f"{source} does not exist: run `embpipe run` first or pass --model", file=sys.stderr)
        return 2
    model = load_model(source, args.max_seq_length, "cpu")
    folder = export_onnx(model, Path(args.output))
    texts = [line.strip() for line in Path(args.texts).read_text().splitlines() if line.strip()] if args.texts else []
    texts = texts or [f"sample text number {i} about configuring and troubleshooting a product" for i in range(64)]
    report = verify_export(model, folder, texts, texts, args.min_cosine)
    print(pd.DataFrame(report.rows()).to_markdown(index=False))
    print(json.dumps({"exported": str(folder), "served_variant": report.served}))
    return 0


def command_sft(args: argparse.Namespace) -> int:
    """Write EmbGen's question–answer pairs as chat-format JSONL (one ``messages`` record per line)."""
    import json
    from pathlib import Path

    from embpipe.core.embgen.questions import SFT_SYSTEM, sft_record
    from embpipe.resources.io_managers import read_table, stored_table_path

    path = stored_table_path("embgen_queries")
    if not path.is_file():
        print(f"{path} does not exist: run `embpipe run --embgen` first (it builds embgen_queries)", file=sys.stderr)
        return 2
    pairs = read_table(path, "embgen_queries")
    if pairs.empty:
        print("embgen_queries is empty (EmbGen off or no question): run `embpipe run --embgen`", file=sys.stderr)
        return 1
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(sft_record(q, a, args.system or SFT_SYSTEM)) for q, a in pairs[["text", "answer"]].values]
    output.write_text("\n".join(lines) + "\n")
    print(json.dumps({"written": str(output), "records": len(lines)}))
    return 0
