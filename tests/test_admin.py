"""Operator commands against the real embedded PostgreSQL: the first cloud key is generated on
the operator's machine and only its hash reaches the job, whose output is logged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.admin import main
from services.auth import ApiKeyStore

ROOT = Path(__file__).resolve().parent.parent
JOB_ENV = {"CLOUD_RUN_JOB": "memory-agent-admin", "CLOUD_RUN_EXECUTION": "memory-agent-admin-x1"}


def generate(capsys) -> tuple[str, str]:
    # No database settings at all: generating a key must not need one.
    assert main(["keys", "generate"], env={}) == 0
    out = capsys.readouterr().out
    secret = re.search(r"^key:\s+(\S+)$", out, re.M).group(1)
    key_hash = re.search(r"^hash:\s+(\S+)$", out, re.M).group(1)
    return secret, key_hash


def run_as_cloud_run_job(database_url: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m services.admin`` as the admin job runs it; stdout and stderr are what
    Cloud Logging would keep."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(JOB_ENV, DATABASE_URL=database_url, LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    return subprocess.run(
        [sys.executable, "-m", "services.admin", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_generated_key_works_once_its_hash_is_added_and_never_reaches_the_logs(
    capsys, database_url, pool
):
    secret, key_hash = generate(capsys)
    key_id, digest = key_hash.split(":")
    assert secret.startswith(f"mak_{key_id}_") and len(digest) == 64
    keys = ApiKeyStore(pool)
    assert keys.verify(secret) is None  # nothing stored yet

    job = run_as_cloud_run_job(database_url, "keys", "add-hash", "first-user", key_hash)
    assert job.returncode == 0, job.stderr
    assert f"key {key_id} for first-user added" in job.stdout
    logged = job.stdout + job.stderr
    assert secret not in logged and secret.split("_")[-1] not in logged

    key = keys.verify(secret)
    assert key is not None and key.user_id == "first-user" and not key.service
    with pool.transaction() as tx:  # the hash is all the database holds
        assert tx.value("SELECT secret_hash FROM api_keys WHERE id = %s", [key_id]) == digest


@pytest.mark.parametrize("command", [["create", "someone"], ["generate"]])
def test_commands_that_print_a_secret_refuse_to_run_in_a_cloud_run_job(command, database_url, pool):
    with pool.transaction() as tx:
        before = tx.value("SELECT count(*) FROM api_keys")
    job = run_as_cloud_run_job(database_url, "keys", *command)
    assert job.returncode == 2
    assert "Cloud Logging" in job.stderr and "add-hash" in job.stderr
    assert "mak_" not in job.stdout + job.stderr
    with pool.transaction() as tx:
        assert tx.value("SELECT count(*) FROM api_keys") == before


def test_add_hash_rejects_malformed_and_repeated_hashes(capsys, database_url, pool):
    env = {"DATABASE_URL": database_url}
    _, key_hash = generate(capsys)
    for bad in ("0123", key_hash.replace(":", "_"), key_hash.upper(), "mak_" + key_hash):
        assert main(["keys", "add-hash", "u1", bad], env=env) == 1
        assert "key hash must look like" in capsys.readouterr().err
    assert main(["keys", "add-hash", "u1", key_hash, "--service", "--name", "bot"], env=env) == 0
    capsys.readouterr()
    assert main(["keys", "add-hash", "u2", key_hash], env=env) == 1
    assert "already exists" in capsys.readouterr().err
    (key,) = [k for k in ApiKeyStore(pool).list("u1") if k.id == key_hash.split(":")[0]]
    assert key.service and key.name == "bot"


def test_list_and_revoke_never_print_secrets(capsys, database_url, pool):
    env = {"DATABASE_URL": database_url}
    secret, key_hash = generate(capsys)
    key_id = key_hash.split(":")[0]
    assert main(["keys", "add-hash", "lister", key_hash], env=env) == 0
    assert main(["keys", "list", "--user", "lister"], env=env) == 0
    assert main(["keys", "revoke", key_id], env=env) == 0
    out = capsys.readouterr().out
    assert f"{key_id}  lister  -  active" in out and f"revoked {key_id} of lister" in out
    assert secret not in out and key_hash.split(":")[1] not in out
    assert ApiKeyStore(pool).verify(secret) is None


def test_create_prints_a_working_secret_on_an_operators_machine(capsys, database_url, pool):
    assert (
        main(
            ["keys", "create", "local-op", "--rate-limit", "30"], env={"DATABASE_URL": database_url}
        )
        == 0
    )
    secret = re.search(r"secret \(shown once\): (\S+)", capsys.readouterr().out).group(1)
    key = ApiKeyStore(pool).verify(secret)
    assert key is not None and key.user_id == "local-op" and key.rate_limit_per_minute == 30
