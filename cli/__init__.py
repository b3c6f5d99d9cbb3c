"""The ``indexpair`` command line: the composition root on top of the library, the
tasks, the flows and the deployment helpers. Nothing imports it (:mod:`cli.main` holds
the Typer ``app``)."""
