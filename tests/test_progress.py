"""The heartbeat of long silent steps: a line every `every` seconds while the block runs, none after."""

import time

from apotflow.sw.progress import heartbeat


def test_heartbeat_says_what_is_still_running():
    said = []
    with heartbeat(said.append, "building", every=0.05):
        time.sleep(0.28)
    n = len(said)
    assert n >= 3 and all(m.startswith("  ... building: ") and m.endswith(" s") for m in said)
    time.sleep(0.15)
    assert len(said) == n  # stopped with the block


def test_quick_step_says_nothing():
    said = []
    with heartbeat(said.append, "x", every=5):
        pass
    assert said == []
