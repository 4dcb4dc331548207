"""Training on ColossalAI: plugins, learning-rate schedule (the loop lands with its own issue)."""
