"""The host's collector settings once the app is indexed (:func:`local.host.runner.settle_memory`)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.hosting import ROOT

# In a process of its own: freezing is for the life of a process, and this one runs other tests.
PROBE = """
import gc, json
from local.host.runner import GC_YOUNG_THRESHOLD, settle_memory
loaded = [{"n": i} for i in range(1000)]  # stands for what indexing leaves behind
before = (gc.get_freeze_count(), gc.get_threshold())
settle_memory()
after = (gc.get_freeze_count(), gc.get_threshold())
gc.collect()
print(json.dumps({"young": GC_YOUNG_THRESHOLD, "before": before, "after": after,
                  "tracked_after_collect": len(gc.get_objects())}))
"""


def test_loaded_objects_are_frozen_and_young_collections_are_rarer() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout)
    frozen_before, threshold_before = found["before"]
    frozen_after, threshold_after = found["after"]
    assert frozen_before == 0
    assert frozen_after >= 1000  # the loaded objects, at least, no longer scanned by any collection
    assert threshold_before[0] == 700  # CPython's default, which the host replaces
    assert threshold_after == [found["young"], *threshold_before[1:]]
    # A full collection afterwards scans only what came later, not the frozen objects.
    assert found["tracked_after_collect"] < frozen_after
