"""Inference summaries and plots written under output/<set>/."""
