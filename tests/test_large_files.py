"""large_files.yml describes the committed weights: the model zoo's CI checks them by path and md5."""

from __future__ import annotations

import hashlib

import yaml

from tests.conftest import REPO


def test_large_files_yml_lists_the_weights_with_their_md5():
    entries = yaml.safe_load((REPO / "large_files.yml").read_text())["large_files"]
    assert {e["path"] for e in entries} == {"models/model.pt", "models/model.ts"}
    for entry in entries:
        assert entry["hash_type"] == "md5"
        digest = hashlib.md5((REPO / entry["path"]).read_bytes()).hexdigest()
        assert digest == entry["hash_val"], f"{entry['path']} changed: update large_files.yml (md5 {digest})"
