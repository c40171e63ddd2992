"""``pbe``: the ``az ml`` batch-endpoint commands on Prefect and Dask (Cyclopts).

One module per command group (``model``, ``data``, ``compute``, ``datastore``,
``batch_endpoint``, ``batch_deployment``, ``job``, ``server``), each a
:class:`~deployments.cli.common.CommandGroup` whose verbs are typed functions;
:mod:`deployments.cli.common` has the global options, running, rendering and errors;
:mod:`deployments.cli.app` the root command and :func:`main`. Prefect is imported only
inside a verb, after the server is chosen, so ``pbe --help`` and ``pbe model …`` stay fast.
"""

from deployments.cli.app import main

__all__ = ["main"]
