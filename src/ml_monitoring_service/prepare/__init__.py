"""Densification, normalisation and windowing into [T, S, F] tensors."""
