"""The engine seam: protocol, dataclasses, conversion, the real (local) and the fake engine."""
