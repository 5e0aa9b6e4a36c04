"""The README, pasted top to bottom into one shell against the test stack: every block runs and
prints what the README shows (tests/e2e/readme_tour.py says how blocks and outputs are read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.settings import Settings, worker_env
from cluster.stack.processes import require_executable
from tests.conftest import AUDIENCE, ISSUER
from tests.e2e.readme_tour import Shell, blocks, run_block, tour_env

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TOUR_TENANT = "readmetour"


def test_readme_tour_runs_as_written(stack: Settings, tmp_path: Path) -> None:
    require_executable("jq", "jq", print)  # the tour reads ids out of answers with jq
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")  # the README runs `.venv/bin/esb`
    env = tour_env(
        {
            **worker_env(stack),
            "ESB_STATE_DIR": str(stack.esb_state_dir),  # the stack's token secret
            "JWT_ISSUER": ISSUER,
            "JWT_AUDIENCE": AUDIENCE,
            "API_PORT": str(stack.api_port),
            "RAY_ADDRESS": stack.ray_address or "",
            "RAY_DASHBOARD_URL": stack.jobs_url,
        }
    )
    ports = {  # the README's default ports -> the test stack's
        "localhost:8080": f"{stack.api_host}:{stack.api_port}",
        "127.0.0.1:8080": f"{stack.api_host}:{stack.api_port}",
        "127.0.0.1:9090": f"{stack.api_host}:{stack.metrics_port}",
    }
    shell = Shell(tmp_path, env)
    try:
        # The README's tenant `acme` is the other tests' default one: the tour gets its own.
        readme = (ROOT / "README.md").read_text().replace("acme", TOUR_TENANT)
        for block in blocks(readme):
            if block.mode == "skip":
                continue
            for readme_port, test_port in ports.items():
                block.body = block.body.replace(readme_port, test_port)
            run_block(shell, block, tmp_path)
    finally:
        shell.close()
