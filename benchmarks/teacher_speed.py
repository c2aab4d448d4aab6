"""Prompt and generation speed (tokens/s) of the local teacher's llama-cpp-python build on this machine.

Each measurement runs in a child process, so a build that crashes on this CPU is reported (with its
signal) instead of ending the benchmark. Prompt speed: one prompt of ``--prompt-tokens`` tokens evaluated
from an empty context; generation speed: ``--gen-tokens`` greedy tokens, one evaluation each. Run it with
the interpreter whose llama-cpp-python you want to measure, and ``--build`` to pick one of the builds that
``scripts/install.sh`` installed (as ``EMBPIPE_LLAMA_BUILD`` does for the local teacher server); results are
merged into ``--output`` by label.

    .venv/bin/python benchmarks/teacher_speed.py --label portable-avx2 --build baseline
    .venv/bin/python benchmarks/teacher_speed.py --label portable-avx512 --build avx512
    /tmp/native/bin/python benchmarks/teacher_speed.py --label native     # a -march=native build
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import queue as queue_module
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSAGE = (
    "Alert H-052 means chassis fan 3 turns too slowly. Replace the fan module while the appliance runs, "
    "then confirm in the event log that the alert cleared. If the alert repeats within a day, check the "
    "firmware level of the enclosure and open a support case with the system dump attached. "
)


def measure(model: str, threads: int, prompt_tokens: int, gen_tokens: int, repeats: int, build: str, queue) -> None:
    """Load the model and put {prompt_tps, generation_tps, …} on ``queue`` (runs in a child process)."""
    import numpy as np

    from embpipe.llm.llama_builds import activate_best_build
    from embpipe.llm.model_weights import require_model

    if build:
        os.environ["EMBPIPE_LLAMA_BUILD"] = build
    chosen = activate_best_build()
    import llama_cpp
    from llama_cpp import Llama

    queue.put(
        {
            "build": chosen,
            "llama_cpp_python": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        }
    )

    llama = Llama(model_path=str(require_model(model)), n_ctx=4096, n_threads=threads,
                  n_threads_batch=threads, seed=0, verbose=False)  # fmt: skip
    tokens = llama.tokenize((PASSAGE * 40).encode(), add_bos=True)[:prompt_tokens]
    prompt_s, gen_s = [], []
    for _ in range(repeats):
        llama.reset()
        start = time.perf_counter()
        llama.eval(tokens)
        prompt_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(gen_tokens):
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
            llama.eval([int(np.argmax(logits))])
        gen_s.append(time.perf_counter() - start)
    queue.put(
        {
            "prompt_tps": round(prompt_tokens / min(prompt_s), 1),
            "generation_tps": round(gen_tokens / min(gen_s), 2),
            "prompt_s": [round(s, 3) for s in prompt_s],
            "generation_s": [round(s, 3) for s in gen_s],
        }
    )


def run(args: argparse.Namespace) -> dict:
    """One measurement in a child process; a crash becomes ``{"crashed": "SIGSEGV"}``."""
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(
        target=measure,
        args=(args.model, args.threads, args.prompt_tokens, args.gen_tokens, args.repeats, args.build, queue),
    )
    child.start()
    child.join()
    result = {
        "label": args.label,
        "model": args.model,
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "cpu": platform.processor() or platform.machine(),
        "load_average": os.getloadavg()[0],
    }
    with contextlib.suppress(queue_module.Empty):
        while True:
            result.update(queue.get(timeout=2))
    if child.exitcode != 0:
        code = child.exitcode or 0
        result["crashed"] = signal.Signals(-code).name if code < 0 else f"exit code {code}"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of the build measured, e.g. portable-avx2")
    parser.add_argument("--build", default="", help="baseline or avx512 (default: what the CPU allows)")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/teacher-speed.json"))
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    results[args.label] = result
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
