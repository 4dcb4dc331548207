"""Inference with exported models: batch generation and streaming chat (see `inference.generation`).

Kept free of heavy imports like the rest of the package: torch and
transformers are imported when a model is loaded or run.
"""
