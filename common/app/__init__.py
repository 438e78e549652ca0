"""The composition root: the ``aislewatch`` command line and the wiring of roles.

The only code that may import every role (``ingest``, ``inference``, ``alerts``, ``reporting``); nothing
below it imports it back.  ``runtime`` builds the workers a process runs, ``embedded`` runs them all over
recorded cameras, ``demo`` and ``stream_eval`` are the two jobs built on that, ``cli`` parses the commands.
"""
