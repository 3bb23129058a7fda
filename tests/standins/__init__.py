"""Stand-ins for backends that cannot run in tests; the real client libraries talk to them."""
