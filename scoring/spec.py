"""What a scoring process needs to start: the script, the model and the environment."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ScoringProcessSpec:
    """Everything that makes two scoring processes interchangeable.

    Two mini-batches share a process only when their specs are equal: same job, same
    deployment (code snapshot, scoring script, model folder, environment).
    """

    code_dir: str
    scoring_script: str
    model_dir: str
    output_dir: str
    deployment: str = "deployment"
    job: str = ""
    logging_level: str = "info"
    environment_variables: dict[str, str] = field(default_factory=dict)
    init_timeout: float = 600.0

    @property
    def script_path(self) -> Path:
        return Path(self.code_dir) / self.scoring_script

    @property
    def key(self) -> str:
        """A stable digest of the spec, used to find a matching live process."""
        payload = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment the platform promises the script before ``init()``."""
        env = dict(os.environ if base is None else base)
        env.update(self.environment_variables)
        env["AZUREML_MODEL_DIR"] = self.model_dir
        env["AZUREML_BI_OUTPUT_PATH"] = self.output_dir
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def argv(self) -> list[str]:
        """``sys.argv`` as the script sees it: the platform passes ``--logging_level``."""
        return [str(self.script_path), "--logging_level", self.logging_level]

    def command(self, read_fd: int, write_fd: int, log_fd: int | None = None) -> list[str]:
        """``python -c …`` that starts :mod:`scoring.host`, installed or not."""
        package_root = str(Path(__file__).resolve().parents[1])
        bootstrap = (
            f"import sys; sys.path.append({package_root!r}); "
            "from scoring.host import main; sys.exit(main(sys.argv))"
        )
        logs = [] if log_fd is None else [str(log_fd)]
        return [sys.executable, "-c", bootstrap, str(read_fd), str(write_fd), *logs]
