"""Dock widgets, one module per stage of the chain plus the agent."""
