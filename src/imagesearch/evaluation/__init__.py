"""Retrieval-quality evaluation: the dataset format, the metrics, the report."""
