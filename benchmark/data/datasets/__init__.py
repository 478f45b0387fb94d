"""Built-in datasets: readers of the original archive layouts and their synthetic twins."""
