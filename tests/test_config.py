"""Config: TOML file, then NEWSLETTER_* environment, then flags; secrets only from the environment."""

import pytest

from newsletter.config import load_config
from newsletter.errors import ConfigError


def test_layers_override_in_order(tmp_path):
    f = tmp_path / "n.toml"
    f.write_text('newsletter_name = "From file"\nbase_url = "https://file.example.org"\nconcurrency = 2\n')
    cfg = load_config(f, {"concurrency": 8}, environ={"NEWSLETTER_BASE_URL": "https://env.example.org"})
    assert cfg.newsletter_name == "From file"
    assert cfg.base_url == "https://env.example.org"
    assert cfg.concurrency == 8


def test_from_address_env_alias():
    assert load_config(environ={"NEWSLETTER_FROM": "a@example.com"}).from_address == "a@example.com"


def test_secret_in_file_is_refused(tmp_path):
    f = tmp_path / "n.toml"
    f.write_text('secret_key = "x"\n')
    with pytest.raises(ConfigError, match="secret"):
        load_config(f, environ={})


def test_unknown_key_and_bad_toml_name_the_file(tmp_path):
    f = tmp_path / "n.toml"
    f.write_text("nope = 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        load_config(f, environ={})
    f.write_text("x = [\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(f, environ={})


def test_named_smtp_servers_take_passwords_from_env(tmp_path):
    f = tmp_path / "n.toml"
    f.write_text('[smtp.main]\nurl = "smtp://u@127.0.0.1:2525"\nmax_connections = 2\n')
    cfg = load_config(f, environ={"NEWSLETTER_SMTP_MAIN_PASSWORD": "s3cret"})
    server = cfg.smtp_server("main")
    assert server.password == "s3cret" and server.max_connections == 2
    assert "s3cret" not in repr(cfg)
    with pytest.raises(ConfigError, match="not configured"):
        cfg.smtp_server("other")

