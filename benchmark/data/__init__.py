"""Dataset readers and the synthetic data the harness can write for itself."""
