"""Structure of cloudbuild.yaml, the Dockerfile and .dockerignore (no Docker, no GCP here).

PyYAML is not in the test venv; .venv-iac has it (checkov depends on it), so cloudbuild.yaml
is turned into JSON by a subprocess of that interpreter (`make iac-venv` builds it if missing).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IAC_VENV = ROOT / ".venv-iac"


def load_yaml(path: Path) -> dict:
    if not (IAC_VENV / ".installed").exists():
        subprocess.run(["make", "-f", "mk/iac.mk", "iac-venv"], cwd=ROOT, check=True, timeout=900)
    code = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    out = subprocess.run(
        [str(IAC_VENV / "bin" / "python"), "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def build() -> dict:
    return load_yaml(ROOT / "cloudbuild.yaml")


def step_text(step: dict) -> str:
    return " ".join([step.get("entrypoint", ""), *step.get("args", [])])


def step(build: dict, step_id: str) -> dict:
    by_id = {s["id"]: s for s in build["steps"]}
    assert step_id in by_id, f"no step {step_id!r}; steps: {list(by_id)}"
    return by_id[step_id]


def order(build: dict) -> list[str]:
    return [s["id"] for s in build["steps"]]


def test_steps_run_in_the_deploy_order(build: dict) -> None:
    ids = order(build)
    expected = [
        "test",
        "build",
        "push",
        "migrate",
        "deploy-no-traffic",
        "smoke-test",
        "shift-traffic",
        "deploy-embed-memories",
        "deploy-apply-retention",
    ]
    assert [i for i in ids if i in expected] == expected
    # waitFor never points forward or at unknown steps, and the gates are chained.
    for i, s in enumerate(build["steps"]):
        for dep in s.get("waitFor", []):
            assert dep in ids[:i], f"{s['id']} waits for {dep}, which is not an earlier step"
    assert step(build, "migrate")["waitFor"] == ["push"]
    assert step(build, "deploy-no-traffic")["waitFor"] == ["migrate"]
    assert step(build, "smoke-test")["waitFor"] == ["deploy-no-traffic"]
    assert step(build, "shift-traffic")["waitFor"] == ["smoke-test"]


def test_test_step_runs_make_test(build: dict) -> None:
    assert "make test" in step_text(step(build, "test"))
    assert step(build, "test")["name"].startswith("python:3.12")


def test_image_tagged_with_short_sha_in_artifact_registry(build: dict) -> None:
    image = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/${_SERVICE}:$SHORT_SHA"
    assert f"--tag={image}" in step(build, "build")["args"]
    assert step(build, "push")["args"] == ["push", image]
    for sid in ("migrate", "deploy-no-traffic"):
        assert f"--image={image}" in step_text(step(build, sid)).replace("\\\n", "")


def test_migrations_run_as_a_cloud_run_job(build: dict) -> None:
    text = step_text(step(build, "migrate"))
    assert "gcloud run jobs update ${_MIGRATE_JOB}" in text
    assert "gcloud run jobs execute ${_MIGRATE_JOB}" in text and "--wait" in text
    tf = (ROOT / "terraform" / "run.tf").read_text()
    assert '"python", "-m", "services.migrate"' in tf


def test_the_admin_job_follows_each_new_image(build: dict) -> None:
    """The first API key is added by the admin job (docs/DEPLOY.md); it must run the code
    of the deployed revision, not the placeholder image Terraform started it with."""
    image = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/${_SERVICE}:$SHORT_SHA"
    text = step_text(step(build, "migrate")).replace("\\\n", "")
    assert re.search(
        rf"gcloud run jobs update \$\{{_ADMIN_JOB\}} \S+\s+--image={re.escape(image)}", text
    )
    tf = (ROOT / "terraform" / "run.tf").read_text()
    assert (
        '"python", "-m", "services.admin"' in tf
        and 'name                = "${local.name}-admin"' in tf
    )


def test_new_revision_gets_no_traffic_until_smoke_tested(build: dict) -> None:
    deploy = step_text(step(build, "deploy-no-traffic"))
    assert "gcloud run deploy ${_SERVICE}" in deploy
    assert "--no-traffic" in deploy and "--tag=sha-$SHORT_SHA" in deploy
    smoke = step_text(step(build, "smoke-test"))
    assert "curl -fsS" in smoke and "sha-$SHORT_SHA" in smoke
    assert set(re.findall(r"\$\$url(/[\w/.-]*)", smoke)) == {"/health"}
    shift = step_text(step(build, "shift-traffic"))
    assert "update-traffic ${_SERVICE}" in shift and "--to-tags=sha-$SHORT_SHA=100" in shift


@pytest.mark.parametrize(
    ("step_id", "function", "entry_point"),
    [
        ("deploy-embed-memories", "embed-memories", "embed_memories"),
        ("deploy-apply-retention", "apply-retention", "apply_retention"),
    ],
)
def test_functions_deployed_gen2_python312(build, step_id, function, entry_point) -> None:
    s = step(build, step_id)
    text = step_text(s)
    assert f"gcloud functions deploy {function} --gen2" in text
    assert "--runtime=python312" in text
    assert f"--entry-point={entry_point}" in text
    assert "--no-allow-unauthenticated" in text
    assert "shift-traffic" in s["waitFor"]


def test_substitutions_documented_and_shell_variables_escaped(build: dict) -> None:
    raw = (ROOT / "cloudbuild.yaml").read_text()
    for name in build["substitutions"]:
        assert name.startswith("_")
        assert re.search(rf"^#\s+{name}\s", raw, re.M), f"{name} is not documented"
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", raw))
    assert used <= set(build["substitutions"]), used - set(build["substitutions"])
    # Cloud Build substitutes $x / ${x}: shell variables must be written $$x.
    for s in build["steps"]:
        for arg in s.get("args", []):
            for m in re.finditer(r"(?<!\$)\$(\{?)([A-Za-z_][A-Za-z0-9_]*)", arg):
                name = m.group(2)
                assert name in build["substitutions"] or name in {
                    "PROJECT_ID",
                    "SHORT_SHA",
                }, f"step {s['id']}: ${name} would be taken as a substitution"
    assert build["options"]["logging"] == "CLOUD_LOGGING_ONLY"


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(froms) >= 2, "multi-stage build expected"
    assert all(image == "python:3.12-slim" for image, _ in froms)
    assert "COPY --from=build" in text
    # Only requirements.txt is installed (no dev/local extras in the image).
    assert re.findall(r"requirements[\w-]*\.txt", text) == ["requirements.txt"] * len(
        re.findall(r"requirements[\w-]*\.txt", text)
    )
    assert "requirements-local" not in text and "requirements-dev" not in text
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    cmd = re.findall(r"^CMD\s+(.+)$", text, re.M)[-1]
    assert json.loads(cmd) == ["gunicorn", "--config", "gunicorn.conf.py", "main:app"]
    assert "PORT" in (ROOT / "gunicorn.conf.py").read_text()
    # Everything main.py imports from this repo is copied in.
    copied = set(re.findall(r"^COPY\s+(?:--chown=\S+\s+)?(.+?)\s+\S+$", text, re.M))
    sources = " ".join(copied)
    for module in ("main.py", "gunicorn.conf.py", "services/", "functions/"):
        assert module in sources


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "deny by default"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"main.py", "gunicorn.conf.py", "requirements.txt", "services", "functions"}


# Cloud Run's front end reserves some URL paths that end in "z" (its known-issues page advises
# avoiding all of them), so nothing that goes through the public URL may use one; /healthz and
# /readyz are only for the container probes, which reach the container directly.
def test_external_checks_use_a_path_that_does_not_end_in_z(build: dict) -> None:
    from services.api.openapi import PATHS

    smoke = re.findall(r"\$\$url(/[\w/.-]*)", step_text(step(build, "smoke-test")))
    deploy_doc = re.findall(r"\$URL(/[\w/.-]*)", (ROOT / "docs" / "DEPLOY.md").read_text())
    assert smoke and deploy_doc, "no checked paths found: the extraction no longer matches"
    for path in smoke + deploy_doc:
        assert not path.rstrip("/").endswith("z"), f"{path} goes through Cloud Run's front end"
        assert path in PATHS, f"{path} is not a route the service serves"
