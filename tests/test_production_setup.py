"""The production Prefect setup (docs/production.md): a Prefect server on PostgreSQL with
Redis messaging runs a job, and records every task run in its final state.

Real ``postgresql`` and ``redis-server`` (Debian packages: ``scripts/install_services.sh``)
on loopback in a temporary folder, a real ``prefect server start`` pointed at them, and a
small job run by a separate process whose ``PREFECT_API_URL`` is that server. Everything is
stopped and removed at the end. Skipped, saying why, where the packages are not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deployments.production import LocalServices, start_prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]

JOB = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
    from pathlib import Path
    from support import make_model, make_spec, write_inputs, write_script
    from flows.batch_score import batch_score

    root = Path(sys.argv[2])
    code = write_script(root / "code", '''
    import os
    def init(): pass
    def run(mini_batch):
        return [os.path.basename(p) for p in mini_batch]
    ''')
    write_inputs(root / "in", 30)
    spec = make_spec(code, make_model(root / "m"), mini_batch_size=3,
                     max_concurrency_per_instance=2)
    state = batch_score(input=str(root / "in"), deployment=spec, output_path=str(root / "out"),
                        return_state=True)
    print(json.dumps({"completed": state.is_completed(), "message": state.message,
                      "flow_run_id": str(state.state_details.flow_run_id)}))
""")


def _installed() -> bool:
    import glob
    import importlib.util

    return bool(
        shutil.which("redis-server")
        and (shutil.which("initdb") or glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        and importlib.util.find_spec("prefect_redis")
    )


@pytest.mark.skipif(
    not _installed(),
    reason="PostgreSQL, Redis or prefect-redis missing: run scripts/install_services.sh",
)
def test_a_job_on_a_postgres_and_redis_prefect_server_records_every_task_run(tmp_path):
    with LocalServices() as services:
        server, url = start_prefect_server(services.prefect_env(), tmp_path / "prefect")
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
            env |= {"PREFECT_API_URL": url, "PREFECT_HOME": str(tmp_path / "client")}
            done = subprocess.run(
                [sys.executable, "-c", JOB, str(REPO), str(tmp_path / "job")],
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
                cwd=str(REPO),
            )
            assert done.returncode == 0, done.stderr[-3000:]
            job = json.loads(done.stdout.strip().splitlines()[-1])
            assert job["completed"], job["message"]
            rows = (tmp_path / "job" / "out" / "predictions.csv").read_text().splitlines()
            assert rows == [f"item{i:04d}.txt" for i in range(30)]
            assert _final_task_runs(url, job["flow_run_id"]) == 10
            # the server's data is in PostgreSQL and its events went through Redis
            assert (
                _sql(services, "select count(*) from task_run where name like 'mini-batch-%'") == 10
            )
            assert int(_redis(services, "XLEN", "events")) > 0
        finally:
            server.terminate()
            server.wait(30)


def _final_task_runs(url: str, flow_run_id: str, within: float = 120.0) -> int:
    """The flow run's ``mini-batch-*`` task runs in a final state, once all 10 are (or time)."""
    import urllib.request

    body = json.dumps(
        {
            "flow_runs": {"id": {"any_": [flow_run_id]}},
            "task_runs": {
                "name": {"like_": "mini-batch-"},
                "state": {"type": {"any_": ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]}},
            },
        }
    ).encode()
    deadline = time.monotonic() + within
    while True:
        request = urllib.request.Request(
            f"{url}/task_runs/count",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            count = int(json.loads(response.read()))
        if count >= 10 or time.monotonic() > deadline:
            return count
        time.sleep(1)


def _sql(services: LocalServices, query: str):
    import asyncio

    import asyncpg

    async def fetch():
        connection = await asyncpg.connect(services.database_url.replace("+asyncpg", ""))
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    return asyncio.run(fetch())


def _redis(services: LocalServices, *command: str) -> str:
    import redis

    client = redis.Redis(host="127.0.0.1", port=services.redis_port)
    try:
        return client.execute_command(*command)
    finally:
        client.close()
