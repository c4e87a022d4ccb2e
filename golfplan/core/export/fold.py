"""Folding the ``PACKED`` flag: the branches a packed file cannot take, removed from a module's tree.

Inside a packed ``train_gpt.py`` the flag ``golfplan.core.export.pack.PACKED`` is true. The tree shaker
(:mod:`golfplan.core.export.shake`) calls :func:`fold` on each module's tree before it looks for what is
reachable: every read of the flag becomes ``True``, the tests it decides fold to their branch
(``if PACKED: ...`` keeps its body, ``if not PACKED and ...: ...`` its ``else``), and statements
after a ``raise`` or ``return`` in the same block go. A build tool: never packed itself.
"""

from __future__ import annotations

import ast
from typing import Any

FLAG = "PACKED"  # golfplan.core.export.pack.PACKED: true in a packed file


class Fold(ast.NodeTransformer):
    """``PACKED`` read as ``True``, and the branches that cannot run then removed."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Constant(True) if node.id == FLAG and isinstance(node.ctx, ast.Load) else node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        return ast.Constant(True) if node.attr == FLAG and isinstance(node.ctx, ast.Load) else node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not) and isinstance(node.operand, ast.Constant):
            return ast.Constant(not node.operand.value)
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        """Leading constants fold (``True or x`` is ``True``, ``True and x`` is ``x``); later ones only
        where the value is tested for truth (:meth:`_truth`): ``x or ""`` is not ``x``."""
        self.generic_visit(node)
        values = list(node.values)
        decides = isinstance(node.op, ast.Or)  # or: a truthy constant decides; and: a falsy one
        while len(values) > 1 and isinstance(values[0], ast.Constant):
            if bool(values[0].value) is decides:
                return values[0]
            values.pop(0)
        return values[0] if len(values) == 1 else ast.BoolOp(node.op, values)

    @staticmethod
    def _truth(test: ast.AST) -> ast.AST:
        """A test's truth where a constant decides it (``x and False``: false, ``x or True``: true;
        its other operands are names and attributes here, read without effects)."""
        pure = (ast.Name, ast.Attribute, ast.Constant, ast.UnaryOp, ast.Compare)
        if isinstance(test, ast.BoolOp) and all(isinstance(x, pure + (ast.BoolOp, ast.expr_context, ast.unaryop,
                                                                      ast.cmpop, ast.boolop)) for x in ast.walk(test)):
            decides = isinstance(test.op, ast.Or)
            if any(isinstance(v, ast.Constant) and bool(v.value) is decides for v in test.values):
                return ast.Constant(decides)
        return test

    def visit_If(self, node: ast.If) -> Any:
        self.generic_visit(node)
        node.test = self._truth(node.test)
        if isinstance(node.test, ast.Constant):
            return (node.body if node.test.value else node.orelse) or None
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        node.test = self._truth(node.test)
        if isinstance(node.test, ast.Constant):
            return node.body if node.test.value else node.orelse
        return node


def fold(tree: ast.Module) -> None:
    """Fold ``PACKED`` (only in modules that read it), then drop statements after a ``raise`` or
    ``return`` in the same block."""
    if not any(getattr(x, "id", getattr(x, "attr", None)) == FLAG for x in ast.walk(tree)):
        return
    Fold().visit(tree)
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                end = next((i for i, n in enumerate(block) if isinstance(n, (ast.Raise, ast.Return))), None)
                if end is not None:
                    del block[end + 1:]
                if not block and name == "body":
                    block.append(ast.Pass())
