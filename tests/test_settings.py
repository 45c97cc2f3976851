"""The server's configuration is fazhi.settings.Settings: FAZHI_* variables, `fazhi serve` flags on top."""

from __future__ import annotations

import os

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fazhi.cli import app as cli
from fazhi.corpora.reader import max_bytes_from_env
from fazhi.errors import FazhiError
from fazhi.serving.app import create_app
from fazhi.serving.auth import hash_key


@pytest.fixture(autouse=True)
def env(monkeypatch):
    """A clean FAZHI_* environment; the tests set what they need."""
    for name in [n for n in os.environ if n.startswith("FAZHI_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_the_environment_configures_the_server(env, tmp_path):
    env.setenv("FAZHI_DB", str(tmp_path / "env.db"))
    env.setenv("FAZHI_MODEL", "rules")
    env.setenv("FAZHI_API_KEYS", "env-key")
    env.setenv("FAZHI_PROTECT_READS", "yes")
    env.setenv("FAZHI_MAX_PARAGRAPHS", "2")
    with TestClient(create_app()) as c:
        assert c.get("/v1/paragraphs").status_code == 401
        r = c.post("/v1/classify", json={"paragraphs": ["依法行政"] * 3}, headers={"X-API-Key": "env-key"})
        assert r.status_code == 413 and "max_paragraphs=2" in r.json()["error"]["message"]
        assert c.get("/v1/model", headers={"X-API-Key": "env-key"}).json()["name"] == "rules"
    assert (tmp_path / "env.db").is_file()


@pytest.mark.parametrize("value, parsed", [("1", True), ("true", True), ("yes", True), ("on", True),
                                           ("0", False), ("false", False), ("no", False), ("off", False)])
def test_booleans_are_parsed_one_way(env, tmp_path, value, parsed):
    env.setenv("FAZHI_BATCHING", value)
    env.setenv("FAZHI_PROTECT_READS", value)
    settings = create_app().state.settings
    assert settings.batching is parsed and settings.protect_reads is parsed


@pytest.mark.parametrize("name, value", [("FAZHI_MAX_BYTES", "20MB"), ("FAZHI_MAX_PARAGRAPHS", "0"),
                                         ("FAZHI_BATCHING", "maybe")])
def test_a_bad_variable_is_one_line_naming_it(env, name, value):
    env.setenv(name, value)
    with pytest.raises(FazhiError, match=f"^{name}: ") as err:
        create_app()
    assert "\n" not in str(err.value)


def test_max_bytes_from_env(env):
    assert max_bytes_from_env() == 20 * 1024 * 1024
    env.setenv("FAZHI_MAX_BYTES", "1234")
    assert max_bytes_from_env() == 1234
    env.setenv("FAZHI_MAX_BYTES", "x")
    with pytest.raises(FazhiError, match="FAZHI_MAX_BYTES"):
        max_bytes_from_env()


@pytest.fixture
def served(monkeypatch):
    """`fazhi serve` without a server: the settings of the app it would have run."""
    import uvicorn

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))

    def serve(*args: str):
        result = CliRunner().invoke(cli, ["serve", *args])
        return result, (apps.pop().state.settings if apps else None)

    return serve


def test_serve_flags_override_the_environment(env, served, tmp_path):
    key_file = tmp_path / "keys"
    key_file.write_text(hash_key("file-key") + "\n")
    env.setenv("FAZHI_BATCHING", "0")
    env.setenv("FAZHI_MAX_PARAGRAPHS", "7")
    result, settings = served("--model", "rules", "--db", str(tmp_path / "s.db"))
    assert result.exit_code == 0, result.output
    assert settings.batching is False and settings.protect_reads is False and settings.max_paragraphs == 7
    assert "no API keys configured" in result.output
    result, settings = served("--model", "rules", "--db", str(tmp_path / "s.db"), "--key-file", str(key_file),
                              "--batching", "--protect-reads")
    assert result.exit_code == 0, result.output
    assert settings.api_key_file == key_file and settings.db == str(tmp_path / "s.db") and settings.model == "rules"
    assert settings.batching is True and settings.protect_reads is True
    assert "no API keys configured" not in result.output


def test_serve_bad_configuration_is_one_line(env, served, tmp_path):
    result, settings = served("--key-file", str(tmp_path / "missing"))
    assert result.exit_code == 2 and settings is None
    assert result.output.strip().splitlines() == [f"fazhi: error: {tmp_path / 'missing'}: API key file not found"]
    env.setenv("FAZHI_MAX_BYTES", "lots")
    result, _ = served()
    assert result.exit_code == 2 and result.output.startswith("fazhi: error: FAZHI_MAX_BYTES: ")


def test_api_key_new_uses_the_key_file_variable(env, tmp_path):
    env.setenv("FAZHI_API_KEY_FILE", str(tmp_path / "keys"))
    result = CliRunner().invoke(cli, ["api-key", "new"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "keys").read_text() == hash_key(result.stdout.strip()) + "\n"
    env.delenv("FAZHI_API_KEY_FILE")
    result = CliRunner().invoke(cli, ["api-key", "new"])
    assert result.exit_code == 2 and "FAZHI_API_KEY_FILE" in result.output
