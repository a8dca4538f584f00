"""Offline assurance under Pulumi mocks: render, check, parity."""
