"""Token shards, the tokenizer and the embedded corpus: what a run reads."""
