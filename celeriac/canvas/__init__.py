"""Canvas: signatures and workflows (chain, group, chord, chunks, xmap, xstarmap).

Importing the package registers Celery's built-in canvas tasks (``celery.map``,
``celery.starmap``, ``celery.chunks``) on every app (see ``builtins``).
"""

from celeriac.canvas.builtins import register_builtins
from celeriac.canvas.chain import chain
from celeriac.canvas.chord import chord
from celeriac.canvas.group import group
from celeriac.canvas.mapping import chunks, xmap, xstarmap
from celeriac.canvas.signature import Dispatch, Signature, maybe_signature, signature
from celeriac.canvas.stamping import StampingVisitor

__all__ = [
    "Dispatch",
    "Signature",
    "StampingVisitor",
    "chain",
    "chord",
    "chunks",
    "group",
    "maybe_signature",
    "register_builtins",
    "signature",
    "xmap",
    "xstarmap",
]
