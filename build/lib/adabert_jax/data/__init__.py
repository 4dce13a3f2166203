"""Task data: registry, readers, tokenization and batching."""
