"""Terraform sets only environment variables that services.config.Settings or gunicorn.conf.py
reads, and deploys only function entry points that main.py defines.

Env names are read from the .tf text without an HCL parser (none in the test venv): every
map key or ``name``/``key`` value in UPPER_SNAKE_CASE counts as an environment variable. That
over-approximates (nothing Terraform itself names is upper case), so a name set anywhere,
inline or in terraform/main.tf's ``local.env``, is compared.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from services.config import env_names

ROOT = Path(__file__).resolve().parent.parent
TF = ROOT / "terraform"

_KEY = re.compile(r'^\s*"?([A-Z][A-Z0-9_]*)"?\s*=', re.M)
_NAMED = re.compile(r'^\s*(?:name|key)\s*=\s*"([A-Z][A-Z0-9_]*)"', re.M)
_ENTRY = re.compile(r'^\s*entry_point\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"', re.M)


def _tf_text() -> str:
    return "\n".join(p.read_text() for p in sorted(TF.glob("*.tf")))


def terraform_env_names() -> set[str]:
    text = _tf_text()
    return set(_KEY.findall(text)) | set(_NAMED.findall(text))


def gunicorn_env_names() -> set[str]:
    """Names gunicorn.conf.py reads (processes and threads are gunicorn's, not the app's)."""
    text = (ROOT / "gunicorn.conf.py").read_text()
    return set(re.findall(r"os\.environ\.get\(\s*['\"]([A-Z][A-Z0-9_]*)['\"]", text))


def test_terraform_env_vars_are_read_by_settings() -> None:
    names = terraform_env_names()
    # Not vacuous: the database, Redis and embedding settings are all wired.
    assert {
        "INSTANCE_CONNECTION_NAME",
        "DB_NAME",
        "DB_USER",
        "DB_IAM_AUTH",
        "DB_PASSWORD",
        "REDIS_URL",
        "OPENAI_API_KEY",
        "EMBEDDING_PROVIDER",
        "EMBEDDING_MODEL",
    } <= names
    assert {"WEB_CONCURRENCY", "GUNICORN_THREADS"} <= gunicorn_env_names() & names
    unknown = sorted(names - set(env_names()) - gunicorn_env_names())
    assert not unknown, f"Terraform sets env vars nothing reads: {unknown}"
    # PORT belongs to Cloud Run; setting it is an error there.
    assert "PORT" not in names


def test_every_env_name_is_extracted_from_local_env() -> None:
    """The extraction sees the names in local.env (guards the regex against format drift)."""
    main_tf = (TF / "main.tf").read_text()
    section = main_tf[main_tf.index("  env = {") :]
    assert {"DB_USER", "EMBED_BATCH_SIZE", "DB_PASSWORD"} <= set(_KEY.findall(section))


def main_module_attributes() -> set[str]:
    """Names main.py binds at module level (read with ast: importing main builds the app)."""
    tree = ast.parse((ROOT / "main.py").read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def test_function_entry_points_exist_in_main() -> None:
    entry_points = set(_ENTRY.findall(_tf_text()))
    assert entry_points == {"embed_memories", "apply_retention"}
    missing = sorted(entry_points - main_module_attributes())
    assert not missing, f"main.py does not define the entry points Terraform deploys: {missing}"


def test_cloudbuild_deploys_the_same_entry_points() -> None:
    text = (ROOT / "cloudbuild.yaml").read_text()
    deployed = set(re.findall(r"--entry-point[= ]([A-Za-z_][A-Za-z0-9_]*)", text))
    assert deployed == set(_ENTRY.findall(_tf_text()))
