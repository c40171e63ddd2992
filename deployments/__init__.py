"""The management plane: model registry, computes, endpoints, deployments, jobs, the CLI.

- :mod:`deployments.registry` — registered model versions in the workspace;
- :mod:`deployments.computes` — ``DaskCompute`` blocks by name;
- :mod:`deployments.endpoints` — an endpoint is a ``BatchEndpoint`` block plus the Prefect
  deployment ``batch-score/<endpoint>``;
- :mod:`deployments.batch_deployments` — ``BatchDeployment`` blocks (pinned model, code
  snapshot, settings);
- :mod:`deployments.jobs`, :mod:`deployments.job_actions` — jobs are flow runs;
- :mod:`deployments.server` — the embedded Prefect server and worker;
- :mod:`deployments.cli` — ``pbe``.

Nothing is imported here, so ``pbe --help`` stays fast.
"""
