"""The task pipeline: settings, registry, envelope, accepting and processing, and its composition root."""
