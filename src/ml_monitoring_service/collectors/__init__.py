"""Clients that fetch raw telemetry from Splunk and Prometheus and combine it."""
