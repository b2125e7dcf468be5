"""Code metrics: per-function complexity from Python's syntax tree, text measures otherwise."""

import ast
import re
from dataclasses import dataclass
from typing import Any

BRACE_LANGUAGES = {
    "c", "cpp", "c++", "csharp", "c#", "dart", "go", "java", "javascript", "js", "jsx",
    "kotlin", "php", "rust", "scala", "swift", "typescript", "ts", "tsx",
}  # fmt: skip
LINE_COMMENTS = {
    "#": {"ruby", "shell", "bash", "sh", "perl", "r", "yaml", "toml", "elixir", "powershell"},
    "--": {"sql", "lua", "haskell", "ada"},
}
BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.TryStar,
          ast.Match)  # fmt: skip
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


class CodeError(ValueError):
    """The code cannot be analysed (a syntax error); the message is safe to show."""


def analyze(code: str, language: str) -> dict[str, Any]:
    language = language.strip().lower()
    if language in ("python", "py", "python3"):
        return _python(code)
    return _text_metrics(code, language)


def _rating(complexity: int) -> str:
    for limit, grade in ((5, "A"), (10, "B"), (20, "C"), (30, "D"), (40, "E")):
        if complexity <= limit:
            return grade
    return "F"


@dataclass
class _Function:
    name: str
    line: int
    length: int
    complexity: int
    nesting: int


def _decisions(node: ast.AST) -> int:
    """Decision points of one node (McCabe): branches, loops, handlers, boolean operators."""
    if isinstance(node, ast.If | ast.IfExp | ast.For | ast.AsyncFor | ast.While | ast.Assert):
        return 1
    if isinstance(node, ast.ExceptHandler | ast.match_case):
        return 1
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    if isinstance(node, ast.comprehension):
        return 1 + len(node.ifs)
    return 0


def _own_nodes(function: ast.AST) -> list[tuple[ast.AST, int]]:
    """The nodes of a function with their block depth, without nested functions and classes."""
    found: list[tuple[ast.AST, int]] = []
    stack = [(child, 0) for child in ast.iter_child_nodes(function)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (*FUNCTIONS, ast.ClassDef, ast.Lambda)):
            continue
        found.append((node, depth))
        inner = depth + 1 if isinstance(node, BLOCKS) else depth
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))
    return found


def _functions(tree: ast.AST, prefix: str = "") -> list[_Function]:
    result: list[_Function] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, FUNCTIONS):
            nodes = _own_nodes(node)
            result.append(
                _Function(
                    name=prefix + node.name,
                    line=node.lineno,
                    length=(node.end_lineno or node.lineno) - node.lineno + 1,
                    complexity=1 + sum(_decisions(n) for n, _ in nodes),
                    nesting=max((d + 1 for n, d in nodes if isinstance(n, BLOCKS)), default=0),
                )
            )
            result += _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            result += _functions(node, f"{prefix}{node.name}.")
        else:
            result += _functions(node, prefix)
    return result


def _python(code: str) -> dict[str, Any]:
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise CodeError(f"Python syntax error at line {error.lineno}: {error.msg}.") from None
    functions = _functions(tree)
    complexities = [f.complexity for f in functions]
    return {
        "language": "python",
        "method": "syntax tree (ast): McCabe cyclomatic complexity per function",
        "lines": _line_counts(code, "#"),
        "classes": sum(isinstance(n, ast.ClassDef) for n in ast.walk(tree)),
        "functions": [
            {
                "name": f.name,
                "line": f.line,
                "length": f.length,
                "complexity": f.complexity,
                "rating": _rating(f.complexity),
                "max_nesting": f.nesting,
            }
            for f in sorted(functions, key=lambda f: (-f.complexity, f.line))
        ],
        "summary": {
            "function_count": len(functions),
            "average_complexity": round(sum(complexities) / len(complexities), 2)
            if complexities
            else 0,
            "max_complexity": max(complexities, default=0),
        },
    }


def _line_counts(
    code: str, comment: str | None, block: tuple[str, str] | None = None
) -> dict[str, Any]:
    total = blank = comments = 0
    in_block = False
    for raw in code.splitlines():
        line = raw.strip()
        total += 1
        if not line:
            blank += 1
        elif in_block or (block and line.startswith(block[0])):
            comments += 1
            in_block = block is not None and block[1] not in line[2 if not in_block else 0 :]
        elif comment and line.startswith(comment):
            comments += 1
    code_lines = total - blank - comments
    ratio = comments / (comments + code_lines) if comments + code_lines else 0.0
    return {"total": total, "blank": blank, "comment": comments, "code": code_lines,
            "comment_ratio": round(ratio, 3)}  # fmt: skip


def _text_metrics(code: str, language: str) -> dict[str, Any]:
    if language in BRACE_LANGUAGES:
        lines = _line_counts(code, "//", ("/*", "*/"))
        longest, method = _longest_brace_block(code), "brace matching"
    else:
        comment = next((mark for mark, langs in LINE_COMMENTS.items() if language in langs), None)
        lines = _line_counts(code, comment)
        longest, method = _longest_indented_block(code), "indentation"
    return {
        "language": language or "unknown",
        "method": f"text measurements ({method}); no syntax tree, so no complexity figures",
        "lines": lines,
        "longest_block": longest,
    }


def _longest_brace_block(code: str) -> dict[str, Any] | None:
    """The longest top-level `{...}` block whose header looks like a call signature."""
    best: dict[str, Any] | None = None
    depth, start, header = 0, 0, ""
    for number, line in enumerate(code.splitlines(), 1):
        stripped = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|//.*', "", line)
        for char in stripped:
            if char == "{":
                if depth == 0:
                    start, header = number, line.strip()
                depth += 1
            elif char == "}" and depth > 0:
                depth -= 1
                length = number - start + 1
                if depth == 0 and "(" in header and (best is None or length > best["length"]):
                    best = {"header": header[:120], "line": start, "length": length}
    return best


def _longest_indented_block(code: str) -> dict[str, Any] | None:
    """The longest run of lines indented under one less-indented header line."""
    lines = code.splitlines()
    best: dict[str, Any] | None = None
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        end = index
        for later in range(index + 1, len(lines)):
            text = lines[later]
            if text.strip() and len(text) - len(text.lstrip()) <= indent:
                break
            end = later
        length = end - index + 1
        if length > 1 and (best is None or length > best["length"]):
            best = {"header": line.strip()[:120], "line": index + 1, "length": length}
    return best
