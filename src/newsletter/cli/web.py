"""CLI commands for `web` (registered on the root app on import): ``newsletter serve``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app, get_config
from ..errors import ConfigError


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback needs NEWSLETTER_ADMIN_PASSWORD or NEWSLETTER_ADMIN_TOKEN."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port, 0-65535 (0 picks a free one)."),
    watch: Optional[List[Path]] = typer.Option(None, "--watch", help="Reload the preview when a file under this folder changes (repeatable)."),
) -> None:
    """Run the web app: admin preview, campaigns and subscribers; public subscribe, confirm, unsubscribe and archive pages."""
    import socket
    import sys

    import uvicorn

    from ..web import create_app
    from ..web.security import is_loopback_bind

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: a TCP port is 0-65535")
    config = get_config(ctx)
    if not is_loopback_bind(host) and not (config.admin_password or config.admin_token):
        raise ConfigError(
            f"--host {host}: refusing to serve the admin pages beyond this machine without auth; "
            "set NEWSLETTER_ADMIN_PASSWORD or NEWSLETTER_ADMIN_TOKEN"
        )
    for w in watch or []:
        if not w.exists():
            raise ConfigError(f"--watch {w}: no such file or folder")
    # Bind first: a busy port fails before anything else, and the printed address is the one
    # really listening (also for --port 0).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    bound_port = sock.getsockname()[1]
    # Listen at once: a client that read the printed address waits in the backlog until uvicorn
    # accepts, instead of being refused while the app starts.
    sock.listen(2048)
    try:
        web_app = create_app(config, watch=list(watch or []))
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"Serving {config.newsletter_name} on http://{shown}:{bound_port}/  (admin: http://{shown}:{bound_port}/admin/, Ctrl-C to stop)")
    if watch:
        typer.echo("Watching " + ", ".join(str(w) for w in watch) + " for changes")
    sys.stdout.flush()
    server = uvicorn.Server(uvicorn.Config(web_app, log_level="warning", access_log=False, proxy_headers=False))
    server.run(sockets=[sock])
