"""Canvas: signatures and workflows (chain, group, chord)."""

from celeriac.canvas.signature import Signature, maybe_signature, signature

__all__ = ["Signature", "maybe_signature", "signature"]
