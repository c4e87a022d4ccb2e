"""The model: the GPT and its attention."""
