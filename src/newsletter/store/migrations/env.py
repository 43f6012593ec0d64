"""Alembic environment, run programmatically by ``newsletter.store.db.upgrade``.

The connection comes from ``config.attributes["connection"]``; SQLite uses batch mode so
later ALTERs work there too.
"""

from alembic import context

from newsletter.store.metadata import metadata

target_metadata = metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    from newsletter.store.db import get_engine

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: no connection in config.attributes and no sqlalchemy.url to open one")
    engine = get_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
else:
    _run(connection)
