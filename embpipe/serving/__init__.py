"""The OpenAI-compatible embeddings server (``embpipe serve``)."""
