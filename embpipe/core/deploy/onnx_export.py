"""ONNX export of a sentence-transformers model (fp32 and dynamic int8) and an ONNX encoder (checks: export_checks).

The transformer is exported with ``torch.onnx.export`` (token ids → last hidden state, dynamic batch and
sequence axes); pooling (mean or CLS, read from the model's pooling module), the ``Dense`` layers after it
(EmbeddingGemma's two projections; their weights go to ``head.npz``) and L2 normalisation run in numpy, so the
ONNX encoder returns what ``SentenceTransformer.encode(normalize_embeddings=True)`` returns. The model's query
and document prompts are kept with the export, and ``OnnxEncoder.encode(texts, role=...)`` puts them before
the texts as ``encode_query`` / ``encode_document`` do.
The int8 variant is onnxruntime's dynamic quantization of the fp32 graph (per-channel weights), except the
feed-forward down-projections (``FP32_NODES``): they read the GELU's outliers, and quantizing them too costs
the packaged MiniLM its parity (min cosine 0.982 against 0.992 with them kept in fp32).

Example:
    >>> folder = export_onnx(model, Path("data/models/onnx_model"))  # doctest: +SKIP
    >>> OnnxEncoder(folder, "int8").encode(["how do I reset the appliance?"]).shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embpipe.core.deploy.attention_masks import bidirectional_masks, bidirectional_windows
from embpipe.core.embedding import Role, role_prompts

SETTINGS_FILE = "embpipe_onnx.json"
HEAD_FILE = "head.npz"  # the Dense layers after pooling: weight_<i>, bias_<i>
VARIANT_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


HEAD_ACTIVATIONS = {"Identity": lambda x: x, "Tanh": np.tanh, "Normalize": unit_rows}  # Normalize: no weights
OPSET = 17
FP32_NODES = re.compile(r"/layer\.\d+/output/dense/")  # BERT-style names of the FFN down-projection


def graph_inputs(path: Path) -> list[str]:
    """The inputs the exported graph kept (the tracer drops a tokenizer output the model never reads)."""
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def quantization_exclusions(fp32_path: Path) -> list[str]:
    """Names of the fp32 graph's nodes that stay in fp32 in the int8 variant."""
    import onnx

    return [n.name for n in onnx.load(str(fp32_path), load_external_data=False).graph.node if FP32_NODES.search(n.name)]


def pooling_position(model) -> int:
    """Where the model's pooling module is in its module list."""
    for position, module in enumerate(model):
        if hasattr(module, "pooling_mode") or hasattr(module, "get_pooling_mode_str"):  # the latter before 6
            return position
    raise ValueError("the model has no pooling module; ONNX export needs a sentence-transformers model")


def pooling_mode(model) -> str:
    """``mean`` or ``cls``: how the model turns token states into one vector."""
    module = model[pooling_position(model)]
    mode = getattr(module, "pooling_mode", None) or module.get_pooling_mode_str()
    if mode not in {"mean", "cls"}:
        raise ValueError(f"ONNX export supports mean or CLS pooling, not {mode!r}")
    if not getattr(module, "include_prompt", True):
        raise ValueError("ONNX export pools over every token; this model's pooling leaves its prompt out")
    return mode


def tensor_array(tensor) -> np.ndarray:
    return tensor.detach().cpu().float().numpy()


HeadLayer = tuple[np.ndarray | None, np.ndarray | None, str]  # weight (out × in) or none, bias, activation name


def head_layers(model) -> list[HeadLayer]:
    """The ``Dense`` layers after pooling, and any ``Normalize`` between them (a distilled student's: base,
    normalisation, projection); a ``ValueError`` naming any other module there. The last ``Normalize`` is left
    out: the encoder always normalises."""
    layers: list[HeadLayer] = []
    modules = list(model)[pooling_position(model) + 1 :]
    for module in modules[:-1] if modules and type(modules[-1]).__name__ == "Normalize" else modules:
        if type(module).__name__ == "Normalize":
            layers.append((None, None, "Normalize"))
            continue
        activation = type(getattr(module, "activation_function", None)).__name__
        if not hasattr(module, "linear") or activation not in HEAD_ACTIVATIONS:
            supported = ", ".join(a for a in HEAD_ACTIVATIONS if a != "Normalize")
            raise ValueError(
                f"ONNX export supports Dense layers ({supported}) after pooling, not {type(module).__name__}"
            )
        weight, bias = module.linear.weight, module.linear.bias
        layers.append((tensor_array(weight), None if bias is None else tensor_array(bias), activation))
    return layers


def export_onnx(model, folder: Path) -> Path:
    """Write ``model.onnx``, ``model_int8.onnx``, the tokenizer and the pooling settings into ``folder``."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    transformer = model[0].auto_model.cpu().eval()
    tokenizer = model.tokenizer
    sample = tokenizer(["an example input", "a second, longer example input"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class HiddenStates(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            feeds = dict(zip(names, inputs, strict=True))
            if bidirectional_windows(self.inner.config):
                feeds["attention_mask"] = bidirectional_masks(self.inner.config, feeds["attention_mask"])
            return self.inner(**feeds).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(
            HiddenStates(transformer),
            tuple(sample[n] for n in names),
            str(folder / VARIANT_FILES["fp32"]),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    quantize_dynamic(
        str(folder / VARIANT_FILES["fp32"]),
        str(folder / VARIANT_FILES["int8"]),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=quantization_exclusions(folder / VARIANT_FILES["fp32"]),
    )
    tokenizer.save_pretrained(str(folder))
    head = head_layers(model)
    arrays = {f"weight_{i}": weight for i, (weight, _, _) in enumerate(head) if weight is not None}
    arrays |= {f"bias_{i}": bias for i, (_, bias, _) in enumerate(head) if bias is not None}
    if arrays:
        np.savez(folder / HEAD_FILE, **arrays)
    settings = {
        "pooling": pooling_mode(model),
        "max_seq_length": int(model.max_seq_length),
        "inputs": graph_inputs(folder / VARIANT_FILES["fp32"]),  # a model that ignores token_type_ids loses it
        "head": [activation for _, _, activation in head],
        "prompts": role_prompts(model),
    }
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    return folder


class OnnxEncoder:
    """Encode texts with an exported model on onnxruntime's CPU (or CUDA when available) provider."""

    def __init__(self, folder: str | Path, variant: str = "fp32", threads: int = 0):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        self.settings = json.loads((folder / SETTINGS_FILE).read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(folder / VARIANT_FILES[variant]), options, providers=providers)
        self.variant = variant
        self.prompts: dict[str, str] = self.settings.get("prompts", {})
        self.head = self.load_head(folder)

    def load_head(self, folder: Path) -> list[HeadLayer]:
        """The Dense layers after pooling recorded by the export (none for an export without them)."""
        activations = self.settings.get("head", [])
        arrays = dict(np.load(folder / HEAD_FILE)) if (folder / HEAD_FILE).is_file() else {}
        return [(arrays.get(f"weight_{i}"), arrays.get(f"bias_{i}"), name) for i, name in enumerate(activations)]

    def dimension(self) -> int:
        if weights := [weight for weight, _, _ in self.head if weight is not None]:
            return int(weights[-1].shape[0])
        return int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], batch_size: int = 32, role: Role | None = None) -> np.ndarray:
        """L2-normalised float32 embeddings, pooled like the source model, in the order of ``texts``; with ``role``
        ``query`` or ``document``, after the model's prompt for it (when it has one).

        Texts are batched longest first (as sentence-transformers does), so each batch pads to similar lengths.
        """
        prompt = self.prompts.get(role or "", "")
        texts = [prompt + text for text in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dimension()), np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = self.encode_batch([texts[i] for i in rows])
        return vectors

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """One padded batch through the session, pooled and normalised."""
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.settings["max_seq_length"], return_tensors="np"
        )
        feeds = {n: batch[n].astype(np.int64) for n in self.settings["inputs"]}
        states = self.session.run(None, feeds)[0]
        if self.settings["pooling"] == "cls":
            pooled = states[:, 0]
        else:
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (states * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        for weight, bias, activation in self.head:
            linear = pooled if weight is None else pooled @ weight.T + (0.0 if bias is None else bias)
            pooled = HEAD_ACTIVATIONS[activation](linear)
        return unit_rows(pooled)
