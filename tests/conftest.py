"""Shared test wiring."""
