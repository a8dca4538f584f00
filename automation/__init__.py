"""The Stageline driver: `python -m automation …`.

Keep this package's import cheap: `python -m automation --help` must not load the Pulumi SDK
or any provider package. Capability modules import what they need inside functions.
"""
