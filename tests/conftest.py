"""Shared fixtures: real files in temporary folders, settings pointing at a temporary home."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
# Before any fixture runs (module-scoped ones run before the autouse one below): the repo's
# ingest-platform.toml (its golden set, its sources) must not leak into tests that build their own.
for _key in [k for k in os.environ if k.startswith("INGEST_PLATFORM_")]:
    del os.environ[_key]
os.environ["INGEST_PLATFORM_CONFIG"] = str(REPO / "tests" / "empty.toml")
SHARED = REPO.parent / "shared" / "datasets"
EXAMPLE_DOCS = SHARED / "example-docs"
SCIFACT = SHARED / "scifact"
SAMPLE = REPO / "data" / "sample"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared dataset {path.name} not found beside the checkout (../shared/datasets)")
    return path


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    """Tests build their own settings; the repo's ingest-platform.toml and env must not leak in."""
    for key in list(os.environ):
        if key.startswith("INGEST_PLATFORM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("INGEST_PLATFORM_CONFIG", str(REPO / "tests" / "empty.toml"))


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


SMALL_CORPUS = {
    "policies/refund.md": (
        "# Refund policy\n\nCustomers on annual plans may request a full refund within 30 days of purchase.\n\n"
        "## Exceptions\n\nHardware bundles opened after delivery are refunded at 80 percent of the price.\n"
        "Gift cards are never refunded.\n"
    ),
    "products/lanterns.md": (
        "# Lantern catalogue\n\n## Zephyr K7\n\nThe Zephyr K7 lantern emits 1200 lumens and runs for 40 hours "
        "on one charge.\n\n## Aurora Mini\n\nThe Aurora Mini is a pocket lamp rated IP67 for rain and dust.\n"
    ),
    "support/hours.txt": "Support hours\n\nPhone support is open Monday to Friday from 8:00 to 18:00 CET.\n",
    "hr/leave.md": "# Parental leave\n\nEmployees receive 26 weeks of paid parental leave at full salary.\n",
}


def make_corpus(root: Path, files: dict[str, str] = SMALL_CORPUS) -> Path:
    for rel, text in files.items():
        write(root, rel, text)
    return root


def write_config(tmp_path: Path, source_root: Path, name: str = "docs", extra: str = "") -> Path:
    """A real TOML config, as a user would write one: one folder source with an hr rule."""
    path = tmp_path / "ingest-platform.toml"
    path.write_text(
        f'home = "{(tmp_path / "state").as_posix()}"\n{extra}\n'
        f'[[sources]]\nname = "{name}"\npath = "{source_root.as_posix()}"\naccess_groups = ["public"]\n'
        '[[sources.access_rules]]\npattern = "hr/**"\ngroups = ["hr"]\n'
    )
    return path


def make_settings(tmp_path: Path, source_root: Path, **extra):
    from ingest_platform.config import load_settings

    sources = extra.pop("sources", None) or [{
        "name": "docs", "path": str(source_root), "access_groups": ["public"],
        "access_rules": [{"pattern": "hr/**", "groups": ["hr"]}],
    }]
    return load_settings(None, home=str(tmp_path / "state"), sources=sources, **extra)
