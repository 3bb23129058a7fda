"""Project exceptions.

They subclass ``ValueError`` so callers that only know the standard library still catch bad input,
and their messages carry the offending names, shapes and values so an operator can act on them
without reading the code.
"""


class MonitoringError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(MonitoringError, ValueError):
    """The configuration file or environment is invalid (message names file, key and reason)."""


class DataValidationError(MonitoringError, ValueError):
    """Input data is empty, malformed, or does not match what the configuration declares."""


class ModelMismatchError(MonitoringError, ValueError):
    """A saved model was trained for other services, features or preprocessing than requested."""


class NotFittedError(MonitoringError, ValueError):
    """A detector was asked to score or save before it was fitted."""


class InsufficientDataError(DataValidationError):
    """Too few time points to form even one window (e.g. a coarse grid on a short recording)."""


class BackendError(MonitoringError):
    """A backend (Splunk, Prometheus) request failed; the message names backend, query and cause."""


class BackendUnavailableError(BackendError):
    """The backend's circuit breaker is open: recent requests all failed, so none is sent."""
