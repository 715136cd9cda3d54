"""Dagster resources: thin wrappers that hand the core library's objects to assets and checks."""


import json
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import PrivateAttr

from ingest_platform.config import Settings, load_settings
from ingest_platform.index import IndexStore
from ingest_platform.sources import sources_from_paths


class PlatformSettings(dg.ConfigurableResource):
    """The typed settings (TOML file + environment), with run-level overrides from the CLI/UI."""

    config_file: str | None = None
    home: str | None = None
    # Run-level overrides of any top-level setting, JSON-encoded (the CLI's flags). ``sources``
    # may be given as plain paths/URIs (``--source``); they replace the configured sources.
    overrides_json: str | None = None

    def get(self) -> Settings:
        overrides = json.loads(self.overrides_json) if self.overrides_json else {}
        if overrides.get("sources") and isinstance(overrides["sources"][0], str):
            overrides["sources"] = [s.model_dump() for s in sources_from_paths(overrides["sources"])]
        return load_settings(self.config_file, home=self.home, **overrides)


class EmbedderResource(dg.ConfigurableResource):
    """The sentence-transformers model, loaded once per process when a step first needs it."""

    platform: PlatformSettings
    _embedder = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from ingest_platform.embedding import get_embedder

        e = self.platform.get().embedding
        self._embedder = get_embedder(e.model, e.device, e.batch_size)

    @property
    def embedder(self):
        return self._embedder


class IndexStoreResource(dg.ConfigurableResource):
    """The LanceDB chunks table and its tags. A run that writes the index holds the home's writer
    lock while this resource is alive, so a run launched from the UI or a sensor and a CLI run
    never write the same state at once (the second waits up to ``lock_wait_s``)."""

    platform: PlatformSettings
    lock_wait_s: float = 900.0
    _store = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["IndexStoreResource"]:
        from ingest_platform.locking import writer_lock

        s = self.platform.get()
        with writer_lock(s.home, what=f"dagster run {context.run_id}", wait_s=self.lock_wait_s):
            self._store = IndexStore(s.lancedb_uri, s.index.table, home=s.state)
            yield self

    @property
    def store(self) -> IndexStore:
        return self._store


class ParserPoolResource(dg.ConfigurableResource):
    """The parser worker processes of a run, started when a shard first needs parsing and stopped
    when parsing ends (``close``, called by the parse fan-in) or, at the latest, when the run's
    resources are torn down: with the in-process executor every shard step of the run shares them
    (a worker costs seconds to start) and they do not outlive the parse step into embedding; with
    a multiprocess or distributed one, each step process has its own. Never left for ``atexit``,
    which a run worker does not run."""

    platform: PlatformSettings
    _pool = PrivateAttr(default=None)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["ParserPoolResource"]:
        try:
            yield self
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers now (a later ``get`` starts new ones)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def get(self):
        from ingest_platform.parsing import ParserPool

        if self._pool is None:
            self._pool = ParserPool(self.platform.get().parsing)
        return self._pool


def build_resources(config_file: str | None = None, home: str | None = None, overrides: dict | None = None) -> dict:
    platform = PlatformSettings(config_file=config_file, home=home,
                                overrides_json=json.dumps(overrides) if overrides else None)
    return {
        "platform": platform,
        "embedder": EmbedderResource(platform=platform),
        "index_store": IndexStoreResource(platform=platform),
        "parser_pool": ParserPoolResource(platform=platform),
    }
