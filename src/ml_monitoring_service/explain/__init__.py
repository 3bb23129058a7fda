"""Explaining an alert: log evidence from the period's log events and an optional LLM narrative."""
