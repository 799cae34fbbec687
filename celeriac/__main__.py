"""``python -m celeriac``."""

from celeriac.cli.main import main

main()
