"""The redis engine."""
