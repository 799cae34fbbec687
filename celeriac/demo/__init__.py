"""The tasks ``celeriac demo`` runs: the seed tutorials' examples, unchanged but for the import."""
