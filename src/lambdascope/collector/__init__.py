"""The collector, its store and the query code (the ``lambdascope[collector]`` extra).

Nothing is imported at package import: the agent never loads any of this, and each command
imports only what it uses. See docs/collector.md for the design.
"""
