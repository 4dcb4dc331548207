"""Tokenizers: loading with the right special-token settings, light-weight
encoders for worker processes, and training SentencePiece models."""
