"""Offline Terraform check (tools.tfcheck) against the hashicorp/google 6.50.0 schema.

python-hcl2 lives in .venv-iac (see mk/iac.mk), not in the test venv, so the checker runs as
a subprocess of .venv-iac's python; `make iac-venv` builds it when missing. All planted
copies are checked in one subprocess (one parse of the schema, one interpreter start).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"
IAC_VENV = ROOT / ".venv-iac"
IAC_LIB = IAC_VENV / "tfcheck-lib"

# name -> (file, text to replace (exactly once), replacement, expected message in the output)
PLANTS: dict[str, tuple[str, str, str, str]] = {
    "misspelled_attribute": (
        "run.tf",
        "    max_instance_request_concurrency = var.concurrency",
        "    max_instance_request_concurency = var.concurrency",
        'google_cloud_run_v2_service.app.template: unsupported argument "max_instance_request_'
        'concurency" (did you mean "max_instance_request_concurrency"?)',
    ),
    "misspelled_nested_attribute": (
        "database.tf",
        "      point_in_time_recovery_enabled = true",
        "      point_in_time_recovery_enable = true",
        "google_sql_database_instance.main.settings.backup_configuration: unsupported argument "
        '"point_in_time_recovery_enable"',
    ),
    "misspelled_block": (
        "pubsub.tf",
        "  dead_letter_policy {",
        "  deadletter_policy {",
        'google_pubsub_subscription.embed_push: unsupported block type "deadletter_policy"',
    ),
    "unknown_resource_type": (
        "pubsub.tf",
        'resource "google_pubsub_subscription" "dead_letter_hold" {',
        'resource "google_pubsub_subscriptions" "dead_letter_hold" {',
        'google_pubsub_subscriptions.dead_letter_hold: unknown resource type "google_pubsub_'
        'subscriptions"',
    ),
    "unknown_data_source": (
        "apis.tf",
        'data "google_project" "this" {',
        'data "google_projekt" "this" {',
        'data.google_projekt.this: unknown data source type "google_projekt"',
    ),
    "missing_required_attribute": (
        "run.tf",
        '  name                = "${local.name}-migrate"\n',
        "",
        'google_cloud_run_v2_job.migrate: missing required argument "name"',
    ),
    "missing_required_nested_attribute": (
        "scheduler.tf",
        '    uri         = google_cloudfunctions2_function.fn["apply-retention"].url\n',
        "",
        'google_cloud_scheduler_job.retention.http_target: missing required argument "uri"',
    ),
    "dangling_var": (
        "network.tf",
        "  ip_cidr_range            = var.subnet_cidr",
        "  ip_cidr_range            = var.subnet_cdir",
        'var.subnet_cdir: reference to undeclared variable "subnet_cdir" (did you mean '
        '"subnet_cidr"?)',
    ),
    "dangling_local": (
        "run.tf",
        "        mount_path = local.redis_ca_dir",
        "        mount_path = local.redis_ca_path",
        'local.redis_ca_path: reference to undeclared local value "redis_ca_path"',
    ),
    "dangling_resource": (
        "network.tf",
        "  network                  = google_compute_network.vpc.id",
        "  network                  = google_compute_network.main.id",
        "google_compute_network.main.id: reference to undeclared resource "
        "google_compute_network.main",
    ),
    "dangling_resource_attribute": (
        "outputs.tf",
        "  value       = google_redis_instance.cache.host\n",
        "  value       = google_redis_instance.cache.hostname\n",
        'google_redis_instance.cache.hostname: google_redis_instance has no attribute "hostname"',
    ),
    "dangling_module": (
        "network.tf",
        "  network                  = google_compute_network.vpc.id",
        "  network                  = module.network.network_id",
        'module.network: reference to undeclared module "network"',
    ),
    "undeclared_tfvar": (
        "environments/dev.tfvars",
        "min_instances = 0",
        "min_instance = 0",
        'min_instance: sets an undeclared variable (did you mean "min_instances"?)',
    ),
}


def _iac_python() -> tuple[Path, dict[str, str]]:
    python = IAC_VENV / "bin" / "python"
    if not (IAC_VENV / ".installed").exists():
        subprocess.run(["make", "-f", "mk/iac.mk", "iac-venv"], cwd=ROOT, check=True, timeout=900)
    env = dict(os.environ, PYTHONPATH=f"{IAC_LIB}{os.pathsep}{ROOT}")
    return python, env


def plant(dest: Path, name: str) -> Path:
    """A copy of terraform/ at dest/name with the mistake ``name`` planted."""
    rel, old, new, _ = PLANTS[name]
    copy = dest / name
    shutil.copytree(TF, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    path = copy / rel
    text = path.read_text()
    assert text.count(old) == 1, f"{name}: {old!r} must occur exactly once in terraform/{rel}"
    path.write_text(text.replace(old, new))
    return copy


def run_checker(*dirs: Path) -> tuple[int, dict[str, list[str]]]:
    """Run tools.tfcheck on dirs; output lines grouped by the directory's name."""
    python, env = _iac_python()
    proc = subprocess.run(
        [str(python), "-m", "tools.tfcheck", *map(str, dirs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    out: dict[str, list[str]] = {d.name: [] for d in dirs}
    for line in proc.stdout.splitlines():
        m = re.match(r"tfcheck: .* in (\S+)$|tfcheck: (\S+) OK", line)
        key = Path(m.group(1) or m.group(2)).name if m else line.split("/", 1)[0]
        out.setdefault(key, []).append(line)
    return proc.returncode, out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, list[str]]]:
    base = tmp_path_factory.mktemp("tfcheck")
    clean = base / "clean"
    shutil.copytree(TF, clean, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    dirs = [clean] + [plant(base, name) for name in PLANTS]
    return run_checker(*dirs)


def test_terraform_tree_passes(results: tuple[int, dict[str, list[str]]]) -> None:
    _, out = results
    assert len(out["clean"]) == 1, "\n".join(out["clean"])
    assert re.fullmatch(r"tfcheck: \S*clean OK against hashicorp/google 6\.50\.0", out["clean"][0])


def test_the_real_directory_passes() -> None:
    code, out = run_checker(TF)
    assert code == 0, "\n".join(out["terraform"])


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_planted_mistake_is_reported(name: str, results) -> None:
    code, out = results
    expected = PLANTS[name][3]
    lines = out[name]
    assert code == 1
    assert any(expected in line for line in lines), f"{expected!r} not in:\n" + "\n".join(lines)
    # The finding names the file and line the mistake was planted in.
    rel = PLANTS[name][0]
    assert any(line.startswith(f"{name}/{rel}:") for line in lines if expected in line)
    assert lines[-1].startswith("tfcheck: ") and "problem(s)" in lines[-1]
    # ... and does not come from the unmodified tree.
    assert not any(expected in line for line in out["clean"])


def test_schema_is_the_pinned_provider() -> None:
    """The committed schema is hashicorp/google 6.50.0 and versions.tf pins ~> 6.50."""
    import gzip
    import json

    schema = json.loads(
        gzip.decompress((ROOT / "tools/tfcheck/google-6.50.0.schema.json.gz").read_bytes())
    )
    assert schema["version"] == "6.50.0"
    assert schema["source"] == "@cdktf/provider-google@16.12.1"
    assert len(schema["resource"]) > 1000 and len(schema["data"]) > 300
    run = schema["resource"]["google_cloud_run_v2_service"]
    assert {"name", "location"} <= set(run["a"]) and run["b"]["template"]["r"] == 1
    versions = (TF / "versions.tf").read_text()
    assert re.search(r'source\s*=\s*"hashicorp/google"\s*\n\s*version\s*=\s*"~> 6\.50"', versions)


def test_uptime_checks_use_a_path_that_does_not_end_in_z() -> None:
    """Uptime checks go through Cloud Run's front end, which reserves some paths ending in
    "z"; only the container probes (which reach the container directly) use /healthz."""
    from services.api.openapi import PATHS

    text = "\n".join(p.read_text() for p in sorted(TF.glob("*.tf")))
    checked = re.findall(r'http_check \{[^}]*?\bpath\s*=\s*"([^"]*)"', text)
    assert checked, "no uptime check found: the extraction no longer matches"
    for path in checked:
        assert not path.rstrip("/").endswith("z"), path
        assert path in PATHS, f"{path} is not a route the service serves"
    probes = re.findall(r'_probe \{.*?\bpath\s*=\s*"([^"]*)"', text, re.S)
    assert sorted(probes) == ["/healthz", "/readyz"]


# ---- the database connection budget, evaluated by the real terraform binary ------------------
#
# The budget (terraform/capacity.tf -> modules/db_connections) needs no provider, so a root
# holding copies of variables.tf, capacity.tf and the module, plus the two locals it reads
# from main.tf, is planned with the repository's own tfvars: the same variable validations,
# wiring and preconditions as a real `terraform plan`.

TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None, reason="terraform is not on PATH (the budget is checked by its own plan)"
)


@pytest.fixture(scope="module")
def budget_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("budget")
    for name in ("variables.tf", "capacity.tf"):
        shutil.copy(TF / name, root / name)
    shutil.copytree(TF / "modules" / "db_connections", root / "modules" / "db_connections")
    shutil.copytree(TF / "environments", root / "environments")
    main_tf = (TF / "main.tf").read_text()
    pool = re.search(r"^\s*job_pool_size\s*=\s*(\d+)\s*$", main_tf, re.M)
    functions = re.findall(r'^\s*entry_point\s*=\s*"(\w+)"', main_tf, re.M)
    assert pool and len(functions) == 2, "main.tf's job_pool_size or functions changed shape"
    names = ", ".join(f'"{f}" = {{}}' for f in functions)
    (root / "locals.tf").write_text(
        f"locals {{\n  job_pool_size = {pool.group(1)}\n  functions = {{ {names} }}\n}}\n"
    )
    (root / "outputs.tf").write_text(
        'output "db_connections" {\n  value = module.db_connections.connections\n}\n'
    )
    assert terraform(root, "init", "-backend=false").returncode == 0
    return root


def terraform(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CLI_CONFIG_FILE="/dev/null", TF_IN_AUTOMATION="1")
    return subprocess.run(
        [str(TERRAFORM), *args, "-input=false", "-no-color"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def plan(root: Path, tfvars: str | None, *more_files: str, **values: object) -> tuple[int, str]:
    args = ["plan", "-var=project_id=budget-check-1"]
    if tfvars:
        args.append(f"-var-file=environments/{tfvars}.tfvars")
    else:
        args.append("-var=environment=dev")
    args += [f"-var-file={name}" for name in more_files]
    args += [f"-var={name}={value}" for name, value in values.items()]
    proc = terraform(root, *args)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def planned(out: str, name: str) -> int:
    match = re.search(rf"\+ {name}\s+= (\d+)", out)
    assert match, out
    return int(match.group(1))


@needs_terraform
@pytest.mark.parametrize(
    ("tfvars", "total", "available"), [("dev", 48, 90), ("prod", 336, 390), (None, 176, 190)]
)
def test_shipped_shapes_fit_the_connection_budget(budget_root, tfvars, total, available):
    # dev: (3 + 1 tagged) instances x 1 process x (5 + 2) + 2 functions x 2 x (2 + 2) + 2 x 2
    code, out = plan(budget_root, tfvars)
    assert code == 0, out
    assert (planned(out, "total"), planned(out, "available")) == (total, available)


@needs_terraform
def test_the_capacity_plan_in_deploy_md_fits_its_budget(budget_root):
    """The tfvars blocks of docs/DEPLOY.md's capacity plan, applied over prod.tfvars."""
    doc = (ROOT / "docs" / "DEPLOY.md").read_text()
    section = doc[doc.index("## 7. Capacity plan") :]
    blocks = re.findall(r"```hcl\n(.*?)```", section[: section.index("\n## ")], re.S)
    assert len(blocks) == 2, "the capacity plan's tfvars blocks changed"
    expected = {"100k": (156, 190), "1M": (488, 590)}  # the table's connection rows
    for block in blocks:
        shape = re.match(r"# (\S+) users", block).group(1)
        (budget_root / f"{shape}.tfvars").write_text(block)
        code, out = plan(budget_root, "prod", f"{shape}.tfvars")
        assert code == 0, out
        assert (planned(out, "total"), planned(out, "available")) == expected[shape], shape


@needs_terraform
def test_the_budget_is_exact_at_its_edge(budget_root):
    assert plan(budget_root, "dev", db_max_connections=58)[0] == 0  # 48 + reserve 10
    code, out = plan(budget_root, "dev", db_max_connections=57)
    assert code == 1
    assert "Database connection budget exceeded" in out and "48 in all" in out, out


@needs_terraform
@pytest.mark.parametrize(
    ("values", "service"),
    [
        ({"max_instances": 40}, 41 * 12),  # prod's pool 10 opens 10 + 2 per process
        ({"processes": 2}, 21 * 2 * 12),
        ({"db_pool_size": 20}, 21 * (20 + 5)),
        ({"db_connection_reserve": 70}, 21 * 12),  # 336 > 400 - 70
    ],
)
def test_an_over_budget_configuration_fails_the_plan(budget_root, values, service):
    code, out = plan(budget_root, "prod", **values)
    assert code == 1, out
    assert "Database connection budget exceeded" in out
    assert f"the service can open {service} " in out


@needs_terraform
def test_fewer_threads_than_concurrency_fails_the_plan(budget_root):
    code, out = plan(budget_root, "dev", threads=16, concurrency=32)
    assert code == 1
    assert "1 processes x 16 threads can serve only 16" in out, out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
