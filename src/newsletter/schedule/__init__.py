"""Scheduling: one-off scheduled campaigns, recurring digests and the worker that runs them.

Modules: ``cron`` (schedules as pure functions of a clock: cron and simple forms, DST, catch-up),
``digests`` (define digests; run an occurrence into one campaign), ``oneoff`` (schedule a
campaign at a local time), ``worker`` (``newsletter worker``), ``lock`` (one worker per SQLite
database). Import the submodule you need; this package imports nothing heavy.
"""
