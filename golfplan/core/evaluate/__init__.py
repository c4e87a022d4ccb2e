"""Evaluation: the BPB metric and the test-time-training evaluation it shares."""
