"""The admin's settings page: the effective configuration, read-only, with where each value came
from (the TOML file, a NEWSLETTER_* environment variable, a command-line flag, or the default).
Secrets are shown only as set or not set; a database URL without its password."""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends, Request

from .app import state
from .deps import require_admin
from .render import page

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_admin)])  # under admin.router's /admin


PROGRAM = "the program that started the server"  # a Config built in code, not by load_config


@dataclasses.dataclass
class Setting:
    key: str
    value: str
    origin: str
    secret: bool = False


def settings_rows(st) -> list[Setting]:
    """Every setting of the running app with its value as shown and its origin."""
    from ..config import _SECRET_KEYS, Config
    cfg = st.config
    origins = cfg.origins
    out = []
    for f in dataclasses.fields(Config):
        if f.name in ("origins", "config_path"):
            continue
        value = getattr(cfg, f.name)
        if f.name in _SECRET_KEYS:
            if f.name == "admin_password":
                is_set = st.password is not None  # the app keeps only its hash
            elif f.name == "admin_token":
                is_set = st.token_sha256 is not None
            else:
                is_set = bool(value)
            origin = _origin(origins, f.name, is_set) if is_set else "—"
            out.append(Setting(f.name, "set" if is_set else "not set", PROGRAM if origin == "default" else origin, secret=True))
            continue
        if f.name == "smtp":
            for name, server in sorted(value.items()):
                shown = f"{_url(server.url)} (tls {server.tls}" + (f", user {server.user}" if server.user else "") + \
                        (f", rate {server.rate}" if server.rate else "") + f", password {'set' if server.password else 'not set'})"
                out.append(Setting(f"smtp.{name}", shown, _origin(origins, f"smtp.{name}", True)))
            continue
        origin = _origin(origins, f.name, True)
        if origin == "default" and value != _default(f):
            origin = PROGRAM
        out.append(Setting(f.name, _shown(value), origin))
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _origin(origins: dict[str, str], key: str, is_set: bool) -> str:
    where = origins.get(key)
    if where == "file":
        return "TOML file"
    if where and where.startswith("env "):
        return "environment " + where[4:]
    if where == "flag":
        return "command-line flag"
    return "default"


def _url(text: str) -> str:
    """A URL without its password or query string (either may carry a credential)."""
    from ..store.db import mask_url

    masked = mask_url(text)
    return masked.split("?", 1)[0] + "?…" if "?" in masked else masked


def _shown(value) -> str:
    if isinstance(value, str) and "://" in value:
        return _url(value)
    if isinstance(value, list):
        value = [_url(v) if isinstance(v, str) and "://" in v else v for v in value]
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(value) if value else "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v}" for k, v in value.items()) if value else "—"
    return str(value)


@router.get("/settings")
def settings_page(request: Request):
    st = state(request)
    return page(request, "admin/settings.html", admin=True, active="settings", title="Settings",
                rows=settings_rows(st), config_path=st.config.config_path)
