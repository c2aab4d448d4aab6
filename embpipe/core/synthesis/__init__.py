"""Synthesis: single-chunk teacher questions and the document-grouped train/validation/test split."""
