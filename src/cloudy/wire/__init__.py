"""The wire layer: codec, framing and handshake. It does no I/O."""
