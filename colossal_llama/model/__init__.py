"""Models: embedding initialisation for new tokens, freezing helpers."""
