"""Nothing reaches the network: ingest and answer with every non-loopback connection refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]


def test_ingest_and_answer_make_no_network_connection(smartevse):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "ANONYMIZED_", "TIKTOKEN_"))}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "offline_probe.py"), str(smartevse)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [], f"network access attempted: {report['attempts']}"
    assert report["status"] == "indexed"
    assert report["cited_page"] == 2
    assert report["answer_status"] == "completed" and report["tokens"] > 0
    assert report["env"]["HF_HUB_OFFLINE"] == "1"
    assert report["env"]["ANONYMIZED_TELEMETRY"] == "False"
    assert Path(report["env"]["TIKTOKEN_CACHE_DIR"]).is_dir()
