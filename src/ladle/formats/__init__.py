"""Data on disk: image folders, memory-mapped .npy arrays and ladle's packed shard format."""
