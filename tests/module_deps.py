"""Which project files a stage's code can import: a static walk over every import statement
(top-level and inside functions) of the stage's module and, transitively, of each perk module it
reaches. A superset of what one run imports, so a dvc.yaml that covers it misses no code change."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.exists():
            return f
    return None


def _package(name: str, f: Path) -> str:
    return name if f.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, f: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = _package(name, f).split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import tracking` names a module
    return out


def closure(start: str, top: str = "perk") -> set[Path]:
    """Files of every `top` module reachable from module `start` (parent packages included)."""
    seen: set[str] = set()
    todo = [start]
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen or not (name == top or name.startswith(top + ".")):
            continue
        seen.add(name)
        f = module_file(name)
        if f is None:
            continue
        files.add(f)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(name, f))
    return files


def stage_deps(stage: dict) -> list[str]:
    """A dvc.yaml stage's deps (a foreach stage keeps them under `do`)."""
    return stage.get("do", stage)["deps"]


def covered(f: Path, deps: list[str]) -> bool:
    rel = f.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


if __name__ == "__main__":  # print what each dvc.yaml stage lacks: `python tests/module_deps.py`
    import sys

    import yaml
    sys.path.insert(0, str(ROOT))
    from perk.stages import ORDER
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, (module, _) in ORDER.items():
        missing = sorted(str(f.relative_to(ROOT)) for f in closure(f"perk.stages.{module}")
                         if not covered(f, stage_deps(dvc[name])))
        print(f"{name}: {missing or 'complete'}")
