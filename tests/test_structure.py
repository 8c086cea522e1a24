"""Imports run one way: corpus -> rag -> bot, and no circles inside bot/ (also not through imports
made inside functions, which is how `bot/cli.py` and the modules it registers used to reach each other)."""

from __future__ import annotations

import ast

from .conftest import REPO, run_qabot


def _imports(package: str) -> dict[str, set[str]]:
    """module -> the modules of qabot it imports anywhere in its source (top level or in functions)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = module.split(".")[: -node.level] if path.name != "__init__.py" else module.split(".")
                    base = ".".join([*parent, *([base] if base else [])])
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[module] = {t for t in targets if t.split(".")[0] in ("rag", "bot")} - {module}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle among the modules of `graph`, or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_bot_has_no_import_circles_and_rag_never_imports_bot() -> None:
    bot = _imports("bot")
    assert _cycle(bot) == [], " -> ".join(_cycle(bot))
    assert not [m for m, targets in bot.items() if "bot.cli" in targets], "only the entry point imports bot.cli"
    rag = _imports("rag")
    assert not {m: t for m, t in rag.items() if any(x.startswith("bot") for x in t)}


def test_the_qabot_group_still_has_every_command() -> None:
    result = run_qabot("--help", timeout=60)
    assert result.returncode == 0
    for command in ("ask", "chat", "discord", "eval", "feedback", "health", "ingest"):
        assert f"  {command} " in result.stdout, command


def test_the_import_graph_sees_lazy_imports() -> None:
    """The checker itself: a circle made only of imports inside functions is found."""
    assert _cycle({"bot.a": {"bot.b"}, "bot.b": {"bot.a"}}) == ["bot.a", "bot.b", "bot.a"]
