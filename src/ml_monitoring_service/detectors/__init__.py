"""Anomaly detectors with a common fit/score/save/load interface."""
