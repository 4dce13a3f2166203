"""BERT teacher: loading, fine-tuning, knowledge probes, precompute."""
