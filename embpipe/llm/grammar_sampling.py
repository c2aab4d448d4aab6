"""Greedy decoding under a grammar, the token checked first and the whole vocabulary only when it fails.

llama.cpp's grammar sampler masks every token of the vocabulary (151,000 for the bundled teacher) at every
step; with eight sequences decoding together that costs about as much as the decoding step itself on a
2-core CPU. At temperature 0 the reply is the most likely token the grammar allows, so ``GreedyUnderGrammar``
takes the most likely token, asks the grammar about that one token alone, and masks the whole vocabulary
only when the grammar refuses it (as llama.cpp's own common sampler does). The choice is the same as masking
first: when the most likely token is allowed it is also the most likely allowed one.

Example:
    >>> chooser = GreedyUnderGrammar(llama, grammar)  # doctest: +SKIP
    >>> token = chooser.choose(context, batch_index)  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class GreedyUnderGrammar:
    """The most likely next token that ``grammar`` allows (any token when ``grammar`` is ``None``)."""

    def __init__(self, llama, grammar=None):
        import llama_cpp

        self.n_vocab = llama.n_vocab()
        self.vocab = llama._model.vocab
        self.grammar = None
        if grammar is not None:
            self.grammar = llama_cpp.llama_sampler_init_grammar(
                self.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
            )
        self.full_masks = 0  # steps where the most likely token was refused and the whole vocabulary was masked

    def close(self) -> None:
        import llama_cpp

        if self.grammar is not None:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None

    def choose(self, context, index: int) -> int:
        """The chosen token from the logits at batch ``index`` of ``context``, accepted by the grammar."""
        import llama_cpp

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(context, index), shape=(self.n_vocab,))
        token = int(np.argmax(logits))
        if self.grammar is None:
            return token
        if not self.allows(token, float(logits[token])):
            self.full_masks += 1
            token = self.best_allowed(logits)
        if not llama_cpp.llama_vocab_is_eog(self.vocab, token):
            llama_cpp.llama_sampler_accept(self.grammar, token)
        return token

    def allows(self, token: int, logit: float) -> bool:
        """Whether the grammar lets ``token`` come next."""
        import llama_cpp

        one = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, logit, 0.0))
        candidates = llama_cpp.llama_token_data_array(one, 1, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(candidates))
        return math.isfinite(one[0].logit)

    def best_allowed(self, logits: np.ndarray) -> int:
        """The most likely token of the whole vocabulary after the grammar masked what it refuses."""
        import llama_cpp

        data = np.zeros(self.n_vocab, dtype=TOKEN_DATA)
        data["id"], data["logit"] = np.arange(self.n_vocab, dtype=np.int32), logits
        candidates = llama_cpp.llama_token_data_array(
            data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), self.n_vocab, -1, False
        )
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(candidates))
        return int(data["id"][int(np.argmax(data["logit"]))])
