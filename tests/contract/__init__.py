"""Contract tests against real cloud services; each skips, naming its settings, when they are absent."""
