import pytest

from agents.complexity import CodeError, analyze

PYTHON = """
def simple():
    return 1


def branchy(items, flag):
    total = 0
    for item in items:
        if item > 0 and flag:
            total += item
        elif item < 0 or not flag:
            while total > 10:
                total -= 1
    try:
        return [i for i in items if i]
    except ValueError:
        return []


class Service:
    async def run(self):
        def inner():
            return 2 if self else 3
        return inner()
"""


def by_name(result):
    return {f["name"]: f for f in result["functions"]}


def test_analyze_python_measures_each_function_from_the_tree():
    functions = by_name(analyze(PYTHON, "python"))
    assert set(functions) == {"simple", "branchy", "Service.run", "Service.run.inner"}
    assert functions["simple"]["complexity"] == 1
    # for, if, and, elif, or, while, except, comprehension (1) + its if (1): 9 decisions.
    assert functions["branchy"]["complexity"] == 10
    assert functions["branchy"]["max_nesting"] == 4
    assert functions["branchy"]["length"] == 12
    assert functions["branchy"]["rating"] == "B"
    assert functions["Service.run"]["complexity"] == 1
    assert functions["Service.run.inner"]["complexity"] == 2


def test_analyze_python_sorts_most_complex_first_and_summarises():
    result = analyze(PYTHON, "py")
    assert result["functions"][0]["name"] == "branchy"
    assert result["summary"] == {
        "function_count": 4,
        "average_complexity": 3.5,
        "max_complexity": 10,
    }
    assert result["classes"] == 1
    assert result["lines"]["blank"] > 0


def test_analyze_python_syntax_error_is_a_code_error():
    with pytest.raises(CodeError, match="Python syntax error at line 1"):
        analyze("def broken(:\n    pass", "python")


def test_analyze_other_language_states_what_was_measured():
    code = (
        "// util\n/* block\n comment */\n"
        "function add(a, b) {\n  if (a) { return '}'; }\n  return a + b;\n}\n"
    )
    result = analyze(code, "JavaScript")
    assert result["language"] == "javascript"
    assert "no syntax tree" in result["method"]
    assert "complexity" not in str(result["lines"])
    assert result["lines"] == {
        "total": 7,
        "blank": 0,
        "comment": 3,
        "code": 4,
        "comment_ratio": 0.429,
    }
    assert result["longest_block"] == {"header": "function add(a, b) {", "line": 4, "length": 4}


def test_analyze_indentation_language_finds_longest_block():
    code = "# config\nserver:\n  host: x\n  port: 1\nother: 2\n"
    result = analyze(code, "yaml")
    assert result["lines"]["comment"] == 1
    assert result["longest_block"] == {"header": "server:", "line": 2, "length": 3}
