"""
tsyncp_tx: message-passing primitives over TCP for Twisted, wire-compatible
with the Rust crate tsyncp.

The primitives live in one module each: L{tsyncp_tx.mpsc},
L{tsyncp_tx.broadcast}, L{tsyncp_tx.spsc}, L{tsyncp_tx.barrier},
L{tsyncp_tx.channel} and L{tsyncp_tx.multi_channel}.  Lower layers:
L{tsyncp_tx.framing}, L{tsyncp_tx.codecs}, L{tsyncp_tx.pool}; errors in
L{tsyncp_tx.errors}.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
