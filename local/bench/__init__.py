"""``python -m local bench``: tasklane's benchmark, dev tooling beside the host.

See :mod:`local.bench.runner`.
"""
