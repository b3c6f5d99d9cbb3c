"""No import cycle between any two modules of the project (function-level imports count).

The layers themselves are import-linter contracts (pyproject.toml, ``make lint``); this
test adds what a layers contract cannot say: inside a package, too, no two files import
each other, directly or through others. A function-local import that dodges a cycle at
run time still counts here.
"""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("indexpair", "tasks", "flows", "deployments", "cli", "demo")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Each import cycle found, as the chain of modules that closes it (one per edge)."""
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append([importer, *back])
    return cycles


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def test_the_project_has_no_import_cycle(graph: grimp.ImportGraph) -> None:
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_a_cycle_is_found() -> None:
    # The check must be able to fail: close a loop through two real modules (in a graph
    # of its own, not the one the other tests share).
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    graph.add_import(importer="indexpair.errors", imported="indexpair.settings")
    assert ["indexpair.errors", "indexpair.settings", "indexpair.errors"] in import_cycles(graph)


def test_every_package_is_analysed(graph: grimp.ImportGraph) -> None:
    assert {m.split(".")[0] for m in graph.modules} == set(PACKAGES)
