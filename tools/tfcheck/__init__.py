"""Offline Terraform checker: google provider schema + references, no terraform binary needed.

``python -m tools.tfcheck terraform/`` parses every ``.tf`` file with python-hcl2 and checks
resource / data source types, argument and nested block names (dynamic blocks included),
required arguments and blocks against the hashicorp/google 6.50.0 schema committed next to
this file (see ``gen_schema.py``), and that every ``var.``, ``local.``, ``module.``,
``data.`` and resource reference resolves.
"""

from tools.tfcheck.check import Finding, check_dir, load_schema

__all__ = ["Finding", "check_dir", "load_schema"]
