"""Learns what normal looks like for sets of interacting microservices and alerts when it stops."""

__version__ = "0.1.0"
