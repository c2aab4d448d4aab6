"""A snapshot of the asset graph: any change to assets or their dependencies shows as a reviewable diff.

Regenerate after an intended change with: EMBPIPE_UPDATE_SNAPSHOT=1 pytest embpipe_tests/test_asset_graph.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from embpipe.definitions import defs

SNAPSHOT = Path(__file__).with_name("asset_graph_snapshot.json")


def current_graph() -> dict:
    graph = defs.resolve_asset_graph()
    nodes = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        nodes[key.to_user_string()] = {
            "group": node.group_name,
            "code_version": node.code_version,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
        }
    return nodes


def test_asset_graph_matches_snapshot():
    graph = current_graph()
    if os.environ.get("EMBPIPE_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(graph, indent=2) + "\n")
    assert graph == json.loads(SNAPSHOT.read_text())


def test_every_asset_has_a_code_version_and_a_description():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version, key
        assert node.description, key
