"""Blueprints of the tasklane function app: thin adapters from triggers to ``shared``."""
