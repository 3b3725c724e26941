"""Next-token networks. Each maps token ids (B, T) to logits (B, T, V) and is built as
`Net(vocab_size=..., max_len=..., **model_config)`; training lives in `nested_learning.run.lit_module`."""
