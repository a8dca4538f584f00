"""Stageline's guardrail rules and the CrossGuard pack that runs them under the Pulumi engine.

`policy.rules` is the one implementation: plain functions over (resource type, properties, stack
context). `python -m automation check` runs them over an offline render of each stack;
`pulumi preview --policy-pack policy` runs them through `policy/__main__.py` under the engine.
"""
