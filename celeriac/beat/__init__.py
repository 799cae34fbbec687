"""celeriac subpackage."""
