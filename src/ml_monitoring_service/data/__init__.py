"""Data sources and the canonical combined dataset."""
