"""Explaining an alert: log evidence mined from the period's log events and an optional LLM narrative."""
