"""Test helpers in one place: the database harness (pg), row factories, HTTP stubs and daemon fixtures
(http), keys and tokens (keys), the CLI as a subprocess (cli), scripted hostile peers and generators."""
