"""The checker behind ``python -m tools.tfcheck DIR``.

What is checked, per module directory (the root plus any module with a local ``source``):

* every ``.tf`` file parses (python-hcl2);
* ``resource`` / ``data`` types exist in the provider schema; every argument and nested block
  (``dynamic "x"`` included) exists at its level; required arguments and required blocks are
  present; meta-arguments (count, for_each, depends_on, lifecycle, provider, provisioner,
  connection) are accepted; ``provider "google"`` blocks are checked against the provider's
  own configuration schema;
* references resolve: ``var.X`` (declared variable), ``local.X``, ``module.X``,
  ``data.T.N`` and ``T.N`` (declared, and ``T.N.attr`` names a real attribute of ``T``);
* ``variable`` / ``output`` / ``module`` blocks only use the keys Terraform knows;
* each provider a resource type needs is listed in ``required_providers``;
* every ``*.tfvars`` under the root (e.g. ``environments/dev.tfvars``) only sets declared
  variables (variables without a default, like ``project_id``, may come from ``-var``).

Exit status 1 and one ``file:line: where: message`` line per problem if anything is wrong.
"""

from __future__ import annotations

import difflib
import gzip
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("google-6.50.0.schema.json.gz")

# Resources/data sources of the small hashicorp utility providers we allow besides google.
# Written by hand from the hashicorp/archive 2.7 and hashicorp/random 3.7 documentation (the
# cdktf package only carries the google schema); keep it to what this repository uses.
EXTRA_SCHEMA: dict[str, dict[str, Any]] = {
    "data": {
        "archive_file": {
            "a": ["output_path", "type"],
            "o": [
                "exclude_symlink_directories",
                "excludes",
                "output_file_mode",
                "source_content",
                "source_content_filename",
                "source_dir",
                "source_file",
            ],
            "b": {"source": {"a": ["content", "filename"], "r": 0}},
            "c": [
                "id",
                "output_base64sha256",
                "output_base64sha512",
                "output_md5",
                "output_sha",
                "output_sha256",
                "output_sha512",
                "output_size",
            ],
        }
    },
    "resource": {
        # hashicorp/random 3.7
        "random_password": {
            "a": ["length"],
            "o": [
                "keepers",
                "lower",
                "min_lower",
                "min_numeric",
                "min_special",
                "min_upper",
                "numeric",
                "override_special",
                "special",
                "upper",
            ],
            "c": ["bcrypt_hash", "id", "result"],
        },
    },
}
PROVIDER_OF_PREFIX = {"google": "google", "archive": "archive", "random": "random"}

RESOURCE_META = {"count", "for_each", "depends_on", "lifecycle", "provider"}
RESOURCE_META_BLOCKS = {"provisioner", "connection"}
LIFECYCLE_KEYS = {
    "create_before_destroy",
    "prevent_destroy",
    "ignore_changes",
    "replace_triggered_by",
    "precondition",
    "postcondition",
}
VARIABLE_KEYS = {
    "type",
    "default",
    "description",
    "validation",
    "sensitive",
    "nullable",
    "ephemeral",
}
OUTPUT_KEYS = {"value", "description", "sensitive", "depends_on", "precondition", "ephemeral"}
MODULE_META = {"source", "version", "providers", "count", "for_each", "depends_on"}
DYNAMIC_KEYS = {"for_each", "iterator", "labels", "content"}
TOP_LEVEL = {
    "resource",
    "data",
    "variable",
    "output",
    "locals",
    "module",
    "provider",
    "terraform",
    "moved",
    "import",
    "removed",
    "check",
}

_REF = re.compile(
    r"(?<![\w.\-])(?:"
    r"(?P<kw>var|local|module)\.(?P<kwname>[A-Za-z_][\w-]*)"
    r"|data\.(?P<dtype>[a-z][a-z0-9]*_[a-z0-9_]+)\.(?P<dname>[A-Za-z_][\w-]*)"
    r"(?:\[[^\]]*\])?(?:\.(?P<dattr>[A-Za-z_][\w-]*))?"
    r"|(?P<rtype>(?:" + "|".join(PROVIDER_OF_PREFIX) + r")_[a-z0-9_]+)\.(?P<rname>[A-Za-z_][\w-]*)"
    r"(?:\[[^\]]*\])?(?:\.(?P<rattr>[A-Za-z_][\w-]*))?"
    r")"
)


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.where}: {self.message}"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    schema = json.loads(gzip.decompress(SCHEMA_FILE.read_bytes()))
    for kind in ("resource", "data"):
        schema[kind] = {**schema[kind], **EXTRA_SCHEMA[kind]}
    return schema


def unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == '"' and s[-1] == '"' else s


def is_block_list(v: Any) -> bool:
    return (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(x, dict) and x.get("__is_block__") for x in v)
    )


def keys(body: dict) -> list[str]:
    return [k for k in body if not k.startswith("__")]


def did_you_mean(name: str, options: set[str] | list[str]) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.75)
    return f' (did you mean "{close[0]}"?)' if close else ""


def expression_text(value: str) -> str:
    """The expression parts of an hcl2 value, with string literal text blanked out.

    ``"\\"${var.a}-x.y_z\\""`` -> ``" var.a "``: only what Terraform evaluates is scanned
    for references, so ``"roles/run.invoker"`` never looks like one.
    """
    out: list[str] = []
    # stack of modes: "s" = inside a string literal, "e" = expression, "b" = nested braces
    if value.startswith('"'):
        stack, i = ["s"], 1
    elif value.startswith("<<"):
        stack, i = ["s"], value.find("\n") + 1 if "\n" in value else len(value)
    else:
        stack, i = ["e"], 0
    n = len(value)
    while i < n:
        c = value[i]
        mode = stack[-1]
        if mode == "s":
            if c == "\\":
                i += 2
                continue
            if value.startswith("${", i) or value.startswith("%{", i):
                stack.append("e")
                out.append(" ")
                i += 2
                continue
            if c == '"' and len(stack) > 1:
                stack.pop()
            i += 1
            continue
        if c == '"':
            stack.append("s")
            out.append(" ")
        elif c == "{":
            stack.append("b")
            out.append(" ")
        elif c == "}":
            if len(stack) > 1:
                stack.pop()
            out.append(" ")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def iter_strings(value: Any, skip_keys: frozenset[str] = frozenset()) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("__") or k in skip_keys:
                continue
            # object keys can be expressions too: { (var.k) = 1 }
            if k.startswith("${"):
                yield k
            yield from iter_strings(v, skip_keys)
    elif isinstance(value, list):
        for v in value:
            yield from iter_strings(v, skip_keys)


@dataclass
class SourceFile:
    path: Path
    display: str
    text: str
    lines: list[str]
    data: dict

    def locate(self, start: int, name: str) -> int:
        """1-based line of the first ``name =``/``name {``/``"name"`` at or after ``start``."""
        pat = re.compile(r'^\s*(?:dynamic\s+)?"?' + re.escape(name) + r'"?\s*(?:=|\{|")')
        for i in range(max(start - 1, 0), len(self.lines)):
            if pat.search(self.lines[i]):
                return i + 1
        return start

    def locate_text(self, needle: str) -> int:
        for i, line in enumerate(self.lines):
            if needle in line:
                return i + 1
        return 1

    def locate_header(self, kind: str, *labels: str) -> int:
        pat = re.compile(
            r"^\s*" + re.escape(kind) + "".join(r'\s+"' + re.escape(lb) + '"' for lb in labels)
        )
        for i, line in enumerate(self.lines):
            if pat.search(line):
                return i + 1
        return 1


@dataclass
class Module:
    root: Path
    files: list[SourceFile] = field(default_factory=list)
    variables: dict[str, dict] = field(default_factory=dict)
    locals: set[str] = field(default_factory=set)
    modules: dict[str, dict] = field(default_factory=dict)
    resources: set[tuple[str, str]] = field(default_factory=set)
    datas: set[tuple[str, str]] = field(default_factory=set)
    required_providers: set[str] = field(default_factory=set)


class Checker:
    def __init__(self, schema: dict[str, Any], base: Path):
        self.schema = schema
        self.base = base
        self.findings: list[Finding] = []

    # -- reporting ---------------------------------------------------------------------
    def error(self, f: SourceFile | str, line: int, where: str, message: str) -> None:
        display = f.display if isinstance(f, SourceFile) else f
        self.findings.append(Finding(display, line, where, message))

    def display(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base))
        except ValueError:
            return str(path)

    # -- loading -----------------------------------------------------------------------
    def parse(self, path: Path) -> SourceFile | None:
        import hcl2
        from hcl2.utils import SerializationOptions

        text = path.read_text(encoding="utf-8")
        try:
            data = hcl2.loads(text, serialization_options=SerializationOptions(with_comments=False))
        except Exception as exc:  # lark raises several exception types
            msg = " ".join(str(exc).split())[:300]
            line = getattr(exc, "line", 1) or 1
            self.error(self.display(path), line, "parse", f"cannot parse: {msg}")
            return None
        return SourceFile(path, self.display(path), text, text.splitlines(), data)

    def load_module(self, root: Path) -> Module:
        mod = Module(root)
        for path in sorted(root.glob("*.tf")):
            sf = self.parse(path)
            if sf is None:
                continue
            mod.files.append(sf)
            for kind in keys(sf.data):
                if kind not in TOP_LEVEL:
                    self.error(sf, sf.locate(1, kind), kind, f'unsupported block type "{kind}"')
            for entry in sf.data.get("variable", []):
                for name, body in entry.items():
                    if name.startswith("__"):
                        continue
                    name = unquote(name)
                    if name in mod.variables:
                        line = sf.locate_header("variable", name)
                        self.error(sf, line, f"variable.{name}", "declared twice")
                    mod.variables[name] = body
            for body in sf.data.get("locals", []):
                mod.locals.update(keys(body))
            for entry in sf.data.get("module", []):
                for name, body in entry.items():
                    if not name.startswith("__"):
                        mod.modules[unquote(name)] = body
            for kind, bucket in (("resource", mod.resources), ("data", mod.datas)):
                for entry in sf.data.get(kind, []):
                    for rtype, named in entry.items():
                        if rtype.startswith("__"):
                            continue
                        for rname in keys(named):
                            addr = (unquote(rtype), unquote(rname))
                            if addr in bucket:
                                line = sf.locate_header(kind, *addr)
                                self.error(sf, line, f"{kind}.{'.'.join(addr)}", "declared twice")
                            bucket.add(addr)
            for tf in sf.data.get("terraform", []):
                for rp in tf.get("required_providers", []):
                    mod.required_providers.update(keys(rp))
        return mod

    # -- schema ------------------------------------------------------------------------
    def check_body(
        self,
        sf: SourceFile,
        body: dict,
        schema: dict,
        where: str,
        line: int,
        meta: bool = False,
    ) -> None:
        args = set(schema.get("a", [])) | set(schema.get("o", []))
        blocks: dict[str, dict] = schema.get("b", {})
        present: set[str] = set()
        for k in keys(body):
            v = body[k]
            kline = sf.locate(line, k)
            if meta and k in RESOURCE_META:
                if k == "lifecycle" and is_block_list(v):
                    for lc in v:
                        for lk in keys(lc):
                            if lk not in LIFECYCLE_KEYS:
                                self.error(
                                    sf,
                                    sf.locate(kline, lk),
                                    f"{where}.lifecycle",
                                    f'unsupported argument "{lk}"'
                                    + did_you_mean(lk, LIFECYCLE_KEYS),
                                )
                continue
            if meta and k in RESOURCE_META_BLOCKS:
                continue
            if k == "dynamic" and isinstance(v, list) and all(isinstance(x, dict) for x in v):
                for entry in v:
                    for label, dbody in entry.items():
                        if label.startswith("__"):
                            continue
                        name = unquote(label)
                        dline = sf.locate(kline, name)
                        if name not in blocks:
                            self.error(
                                sf,
                                dline,
                                where,
                                f'dynamic block "{name}": unsupported block type'
                                + did_you_mean(name, set(blocks)),
                            )
                            continue
                        present.add(name)
                        for dk in keys(dbody):
                            if dk not in DYNAMIC_KEYS:
                                self.error(
                                    sf,
                                    sf.locate(dline, dk),
                                    f"{where}.dynamic.{name}",
                                    f'unsupported argument "{dk}"',
                                )
                        if "for_each" not in dbody:
                            self.error(sf, dline, f"{where}.dynamic.{name}", 'missing "for_each"')
                        contents = dbody.get("content")
                        if not is_block_list(contents):
                            self.error(
                                sf, dline, f"{where}.dynamic.{name}", 'missing "content" block'
                            )
                            continue
                        for content in contents:
                            self.check_body(sf, content, blocks[name], f"{where}.{name}", dline)
                continue
            if is_block_list(v):
                if k in blocks:
                    present.add(k)
                    for inst in v:
                        self.check_body(sf, inst, blocks[k], f"{where}.{k}", kline)
                elif k in args:
                    self.error(
                        sf,
                        kline,
                        where,
                        f'"{k}" is an argument, not a block: write {k} = ...',
                    )
                else:
                    self.error(
                        sf,
                        kline,
                        where,
                        f'unsupported block type "{k}"' + did_you_mean(k, set(blocks) | args),
                    )
                continue
            if k in args or k in blocks:
                # a block name set with "=" is accepted: framework-based resources use
                # nested attributes that the cdktf schema shows as blocks.
                present.add(k)
                continue
            self.error(
                sf,
                kline,
                where,
                f'unsupported argument "{k}"' + did_you_mean(k, args | set(blocks)),
            )
        for req in schema.get("a", []):
            if req not in present:
                self.error(sf, line, where, f'missing required argument "{req}"')
        for bname, bschema in blocks.items():
            if bschema.get("r") and bname not in present:
                self.error(sf, line, where, f'missing required block "{bname}"')

    def check_schema(self, mod: Module) -> None:
        for sf in mod.files:
            for kind in ("resource", "data"):
                table = self.schema[kind]
                for entry in sf.data.get(kind, []):
                    for rtype_q, named in entry.items():
                        if rtype_q.startswith("__"):
                            continue
                        rtype = unquote(rtype_q)
                        for rname_q in keys(named):
                            rname = unquote(rname_q)
                            where = (
                                f"{kind}.{rtype}.{rname}" if kind == "data" else f"{rtype}.{rname}"
                            )
                            line = sf.locate_header(kind, rtype, rname)
                            prefix = rtype.split("_", 1)[0]
                            provider = PROVIDER_OF_PREFIX.get(prefix, prefix)
                            if provider not in mod.required_providers:
                                self.error(
                                    sf,
                                    line,
                                    where,
                                    f'provider "{provider}" is not in required_providers',
                                )
                            if rtype not in table:
                                what = "resource" if kind == "resource" else "data source"
                                self.error(
                                    sf,
                                    line,
                                    where,
                                    f'unknown {what} type "{rtype}"' + did_you_mean(rtype, table),
                                )
                                continue
                            self.check_body(
                                sf, named[rname_q], table[rtype], where, line, meta=True
                            )
            for entry in sf.data.get("provider", []):
                for pname_q, body in entry.items():
                    if pname_q.startswith("__"):
                        continue
                    pname = unquote(pname_q)
                    line = sf.locate_header("provider", pname)
                    if pname in ("google", "google-beta"):
                        pbody = {k: v for k, v in body.items() if k != "alias"}
                        self.check_body(
                            sf, pbody, self.schema["provider_config"], f"provider.{pname}", line
                        )
            for entry in sf.data.get("variable", []):
                for name_q, body in entry.items():
                    if name_q.startswith("__"):
                        continue
                    name = unquote(name_q)
                    line = sf.locate_header("variable", name)
                    for k in keys(body):
                        if k not in VARIABLE_KEYS:
                            self.error(
                                sf,
                                sf.locate(line, k),
                                f"variable.{name}",
                                f'unsupported argument "{k}"' + did_you_mean(k, VARIABLE_KEYS),
                            )
            for entry in sf.data.get("output", []):
                for name_q, body in entry.items():
                    if name_q.startswith("__"):
                        continue
                    name = unquote(name_q)
                    line = sf.locate_header("output", name)
                    for k in keys(body):
                        if k not in OUTPUT_KEYS:
                            self.error(
                                sf,
                                sf.locate(line, k),
                                f"output.{name}",
                                f'unsupported argument "{k}"' + did_you_mean(k, OUTPUT_KEYS),
                            )
                    if "value" not in body:
                        self.error(sf, line, f"output.{name}", 'missing required argument "value"')

    # -- references --------------------------------------------------------------------
    def resource_attrs(self, kind: str, rtype: str) -> set[str] | None:
        s = self.schema[kind].get(rtype)
        if s is None:
            return None
        return (
            set(s.get("a", []))
            | set(s.get("o", []))
            | set(s.get("b", {}))
            | set(s.get("c", []))
            | {"id"}
        )

    def check_refs(self, mod: Module) -> None:
        for sf in mod.files:
            seen: set[tuple[str, str]] = set()
            for value in iter_strings(sf.data, skip_keys=frozenset({"ignore_changes"})):
                if "${" not in value and not _REF.search(value):
                    continue
                # a bare expression such as `var.x` is serialized as ${var.x}
                expr = expression_text(value)
                for m in _REF.finditer(expr):
                    problem = self.ref_problem(mod, m)
                    if problem and (m.group(0), problem) not in seen:
                        seen.add((m.group(0), problem))
                        ref = m.group(0)
                        head = ref.split("[", 1)[0]
                        self.error(sf, sf.locate_text(head), ref.replace("[ ]", "[...]"), problem)

    def ref_problem(self, mod: Module, m: re.Match) -> str | None:
        if m.group("kw"):
            kw, name = m.group("kw"), m.group("kwname")
            pool = {"var": mod.variables, "local": mod.locals, "module": mod.modules}[kw]
            what = {"var": "variable", "local": "local value", "module": "module"}[kw]
            if name not in pool:
                return f'reference to undeclared {what} "{name}"' + did_you_mean(name, set(pool))
            return None
        if m.group("dtype"):
            kind, rtype, rname, attr = "data", m.group("dtype"), m.group("dname"), m.group("dattr")
            pool = mod.datas
        else:
            kind, rtype, rname, attr = (
                "resource",
                m.group("rtype"),
                m.group("rname"),
                m.group("rattr"),
            )
            pool = mod.resources
        if (rtype, rname) not in pool:
            names = {f"{t}.{n}" for t, n in pool}
            label = "data source" if kind == "data" else "resource"
            return f"reference to undeclared {label} {rtype}.{rname}" + did_you_mean(
                f"{rtype}.{rname}", names
            )
        attrs = self.resource_attrs(kind, rtype)
        if attr and attrs is not None and attr not in attrs:
            return f'{rtype} has no attribute "{attr}"' + did_you_mean(attr, attrs)
        return None

    # -- tfvars ------------------------------------------------------------------------
    def check_tfvars(self, mod: Module) -> None:
        for path in sorted(mod.root.rglob("*.tfvars")):
            if ".terraform" in path.parts:
                continue
            sf = self.parse(path)
            if sf is None:
                continue
            for k in keys(sf.data):
                if k not in mod.variables:
                    self.error(
                        sf,
                        sf.locate(1, k),
                        k,
                        "sets an undeclared variable" + did_you_mean(k, set(mod.variables)),
                    )

    # -- driver ------------------------------------------------------------------------
    def check_module(self, root: Path, depth: int = 0) -> None:
        mod = self.load_module(root)
        if not mod.files:
            self.error(self.display(root), 1, "module", "no .tf files found")
            return
        self.check_schema(mod)
        self.check_refs(mod)
        if depth == 0:
            self.check_tfvars(mod)
        for name, body in mod.modules.items():
            source = unquote(str(body.get("source", "")))
            if source.startswith(("./", "../")) and depth < 5:
                child = (root / source).resolve()
                if child.is_dir():
                    self.check_module(child, depth + 1)
                else:
                    self.error(
                        self.display(root), 1, f"module.{name}", f"source {source} not found"
                    )


def check_dir(root: str | Path, schema: dict[str, Any] | None = None) -> list[Finding]:
    root = Path(root)
    checker = Checker(schema or load_schema(), root.parent if root.is_dir() else Path.cwd())
    checker.check_module(root)
    return sorted(set(checker.findings))


def main(argv: list[str]) -> int:
    """``python -m tools.tfcheck DIR [DIR ...]``: exit 1 if any directory has a problem."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m tools.tfcheck DIR [DIR ...]", file=sys.stderr)
        return 2
    schema = load_schema()
    status = 0
    for arg in argv:
        root = Path(arg)
        if not root.is_dir():
            print(f"{root}: not a directory", file=sys.stderr)
            return 2
        findings = check_dir(root, schema)
        for f in findings:
            print(f)
        if findings:
            print(f"tfcheck: {len(findings)} problem(s) in {root}")
            status = 1
        else:
            print(f"tfcheck: {root} OK against hashicorp/google {schema['version']}")
    return status
