"""A server process loads FHIR R4's tables and the domains' operations at start, before its
first request (the requests queued behind a process's first write at release time waited for
them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from carenet.bootstrap import build_app
from carenet.config import Settings
from carenet.fhir import definitions, searchparams
from carenet.store.migrate import upgrade

url = sys.argv[1]
upgrade(url)
app = build_app(Settings(database_url=url, base_url="http://testserver", env="test"))
from carenet.api import operations

def loaded():
    return [
        searchparams._by_type.cache_info().currsize,
        definitions._data.cache_info().currsize,
        operations.registry.cache_info().currsize,
        "carenet.domains.scheduling.api" in sys.modules,
    ]

before = loaded()
with TestClient(app):  # runs the app's start-up, sends nothing
    after = loaded()
print(json.dumps({"before": before, "after": after}))
"""


def test_the_tables_and_the_operations_are_loaded_at_start(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, f"sqlite:///{tmp_path / 'start.db'}"],
        env={**os.environ, "CARENET_DATABASE_URL": f"sqlite:///{tmp_path / 'start.db'}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"before": [0, 0, 0, False], "after": [1, 1, 1, True]}
