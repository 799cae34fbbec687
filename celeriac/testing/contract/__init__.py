"""Reusable contract suites for transports and result backends."""
