"""Generate the compact google provider schema used by ``tools.tfcheck``.

Source: the npm package ``@cdktf/provider-google@16.12.1``, whose ``.jsii`` assembly is
generated from the hashicorp/google 6.50.0 provider schema. Every resource / data source
class there has a ``<Name>Config`` interface whose properties are the Terraform arguments
(non-optional = required) and whose struct-typed properties are the nested blocks. The
Terraform name of each property is taken from its docs link (``...#ip_configuration``),
falling back to camelCase -> snake_case.

Usage (needs network once, to fetch the package; tests never run this)::

    cd /tmp && npm pack @cdktf/provider-google@16.12.1
    python -m tools.tfcheck.gen_schema /tmp/cdktf-provider-google-16.12.1.tgz

Output ``tools/tfcheck/google-6.50.0.schema.json.gz``, shaped as::

    {"provider": "hashicorp/google", "version": "6.50.0",
     "provider_config": BLOCK,
     "resource": {"google_x": BLOCK}, "data": {"google_x": BLOCK}}
    BLOCK = {"a": [required args], "o": [optional args], "c": [computed-only attrs],
             "b": {block_name: {"r": 0|1 (block required?), ...BLOCK}}}

("c" only at the top level, for checking ``google_x.name.attr`` references.)
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import tarfile
from pathlib import Path

PROVIDER_VERSION = "6.50.0"
OUT = Path(__file__).with_name(f"google-{PROVIDER_VERSION}.schema.json.gz")

_DOC_LINK = re.compile(r"docs/(resources|data-sources)/(\S+) (\S+)\}")
_ANCHOR = re.compile(r"#([a-z0-9_]+) [A-Za-z0-9]+#")
_META = {"dependsOn", "count", "provider", "lifecycle", "forEach", "provisioners", "connection"}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def tf_name(prop: dict) -> str:
    remarks = prop.get("docs", {}).get("remarks", "") + prop.get("docs", {}).get("summary", "")
    m = _ANCHOR.search(remarks)
    return m.group(1) if m else snake(prop["name"])


def _struct_fqn(type_: dict) -> str | None:
    """The struct fqn of a block-typed property (single, list or IResolvable|list)."""
    if "fqn" in type_:
        return None if type_["fqn"].startswith("cdktf.") else type_["fqn"]
    if "collection" in type_:
        return _struct_fqn(type_["collection"]["elementtype"])
    if "union" in type_:
        for t in type_["union"]["types"]:
            fqn = _struct_fqn(t)
            if fqn:
                return fqn
    return None


class Extractor:
    def __init__(self, types: dict):
        self.types = types

    def props(self, fqn: str) -> list[dict]:
        t = self.types[fqn]
        out = list(t.get("properties", []))
        for parent in t.get("interfaces", []):
            if parent in self.types:
                out += self.props(parent)
        return out

    def block(self, fqn: str, depth: int = 0) -> dict:
        req, opt, blocks = [], [], {}
        for p in self.props(fqn):
            if p["name"] in _META and depth == 0:
                continue
            name = tf_name(p)
            sub = _struct_fqn(p["type"])
            if sub and self.types.get(sub, {}).get("datatype") and depth < 12:
                b = self.block(sub, depth + 1)
                b["r"] = 0 if p.get("optional") else 1
                blocks[name] = b
            elif p.get("optional"):
                opt.append(name)
            else:
                req.append(name)
        out: dict = {}
        if req:
            out["a"] = sorted(req)
        if opt:
            out["o"] = sorted(opt)
        if blocks:
            out["b"] = dict(sorted(blocks.items()))
        return out


def generate(jsii: dict) -> dict:
    types = jsii["types"]
    ex = Extractor(types)
    schema: dict = {
        "provider": "hashicorp/google",
        "version": PROVIDER_VERSION,
        "source": f"{jsii['name']}@{jsii['version']}",
        "resource": {},
        "data": {},
    }
    for fqn, t in types.items():
        base = t.get("base")
        if t.get("kind") != "class" or base not in (
            "cdktf.TerraformResource",
            "cdktf.TerraformDataSource",
            "cdktf.TerraformProvider",
        ):
            continue
        config = fqn + "Config"
        if config not in types:
            continue
        block = ex.block(config)
        if base == "cdktf.TerraformProvider":
            schema["provider_config"] = block
            continue
        m = _DOC_LINK.search(t["docs"].get("summary", ""))
        if not m:
            raise SystemExit(f"no terraform type name for {fqn}")
        kind = "resource" if m.group(1) == "resources" else "data"
        tf_type = m.group(3)
        args = set(block.get("a", [])) | set(block.get("o", [])) | set(block.get("b", {}))
        computed = {
            snake(p["name"])
            for p in t.get("properties", [])
            if not p.get("static") and not p["name"].endswith("Input")
        }
        computed -= args
        computed.discard("fqn")
        computed.discard("friendly_unique_id")
        computed.discard("terraform_resource_type")
        computed.discard("terraform_generator_metadata")
        computed.discard("terraform_meta_arguments")
        if computed:
            block["c"] = sorted(computed)
        schema[kind][tf_type] = block
    schema["resource"] = dict(sorted(schema["resource"].items()))
    schema["data"] = dict(sorted(schema["data"].items()))
    return schema


def load_jsii(path: Path) -> dict:
    if path.suffix == ".tgz" or path.name.endswith(".tar.gz"):
        with tarfile.open(path) as tar:
            member = tar.extractfile("package/.jsii")
            assert member is not None
            return json.load(member)
    return json.loads(path.read_text())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    schema = generate(load_jsii(Path(argv[0])))
    data = json.dumps(schema, separators=(",", ":"), sort_keys=False).encode()
    OUT.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(
        f"{OUT}: {len(schema['resource'])} resources, {len(schema['data'])} data sources, "
        f"{len(data) / 1e6:.1f} MB json, {OUT.stat().st_size / 1e6:.2f} MB gzipped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
