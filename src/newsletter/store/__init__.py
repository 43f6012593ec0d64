"""Subscribers, lists and campaigns in SQL: SQLite by default, PostgreSQL when they grow.

``db`` (engines, migrations, sessions), ``models`` (tables), ``addresses`` (validation and
normalization), ``tokens`` and ``secret`` (signed unsubscribe/confirm links),
``subscribers``/``lists``/``importer`` (operations; beside ``subscribers``: ``suppressions``,
``export``, ``optin``, ``leaving``, ``consent``; beside ``importer``: ``import_reading``,
``import_batches``, ``import_sql``).
"""
