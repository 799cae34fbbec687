"""Adjustments for frameworks the app runs inside, switched on by their environment (Django)."""

from celeriac.fixups.django import DjangoFixup

__all__ = ["DjangoFixup"]
