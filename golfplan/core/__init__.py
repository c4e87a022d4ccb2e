"""The core trainer, faithful to the challenge baseline. It knows no technique."""
