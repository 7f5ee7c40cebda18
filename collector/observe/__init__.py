"""Seeing how it goes: what a run did (reports), its metrics and where they go, live progress,
and the ``status`` and ``verify`` commands, which read the archive only. Imports ``core``,
``graph``, ``archive`` and ``tenants``; never ``run``."""
