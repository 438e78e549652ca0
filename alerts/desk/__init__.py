"""The security desk: a live web page (and API) where guards see each alert with its evidence and record what
happened, behind sign-in, roles and store isolation.

- ``roles``: who may do what, and which stores a signed-in user sees (``Principal``).
- ``accounts``: users, password hashes, server-side sessions and API tokens in the database.
- ``audit``: the append-only audit log, and the sign-in rate limit read from it.
- ``queries``: alerts as the desk shows them, always filtered by the user's stores; acknowledging with a
  verdict, reopening, resolving, each under a version check.
- ``feed``: the live feed, read from ``alert_events`` and fanned out to every open page (replayable).
- ``web``: the FastAPI app (pages, API, server-sent events, CSRF); ``server``: running it with uvicorn.
"""
