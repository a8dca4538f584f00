"""Promotion: the run, its stages, gates, verification, steps, record, notifications and releases."""
