"""The package rules as a test: the tracker knows no Telegram (it has a port, bot/chat.py),
storage knows nothing of the bot, the stand-ins know nothing of what they stand in for, and the
pure parts of the bot (reading Resell Scan, reports, the CSV) know no Telegram. Imports
anywhere in a module count, inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports are not used here)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def files(*parts: str) -> list[Path]:
    target = ROOT.joinpath(*parts)
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for name in sorted(imports(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


RULES = [
    # The tracker talks to the chat through its port (bot/chat.py): no package cycle.
    (("bot", "tracker.py"), ("bot.telegram", "telegram")),
    (("bot", "chat.py"), ("bot.telegram", "telegram")),
    (("storage",), ("bot", "sandbox", "telegram")),
    (("sandbox",), ("bot", "storage", "telegram")),
    (("bot", "resellscan"), ("bot.telegram", "telegram", "storage")),
    (("bot", "report.py"), ("bot.telegram", "telegram")),
    (("bot", "results.py"), ("bot.telegram", "telegram")),
    (("bot", "export.py"), ("bot.telegram", "telegram")),
    (("bot", "reconcile.py"), ("bot.telegram", "telegram")),
    (("bot", "intake.py"), ("bot.telegram", "telegram")),
]


@pytest.mark.parametrize(("where", "forbidden"), RULES, ids=lambda v: "/".join(v))
def test_package_rules(where: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    paths = files(*where)
    assert paths, f"nothing at {where}"
    assert offenders(paths, forbidden) == []


def test_the_rule_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from telegram.error import BadRequest\n    import bot.app\n")
    assert imports(module) >= {"telegram.error", "telegram.error.BadRequest", "bot.app"}
