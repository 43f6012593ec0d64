"""The web app: admin pages (preview, campaigns, subscribers), JSON API and public pages.

``create_app(config, engine=None)`` builds it; ``newsletter serve`` runs it under uvicorn.
"""

from .app import create_app

__all__ = ["create_app"]
