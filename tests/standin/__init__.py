"""Test equipment for the engine tests: stand-ins for what cannot be had here (not product code)."""
