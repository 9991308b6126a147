"""A small renderer for the subset of Go's text/template that Ollama chat templates use, so a Modelfile's
template can be checked here against the text the model was trained on (Ollama itself is a Go program).

Supported: text and `{{ }}` actions with `{{-`/`-}}` whitespace trimming; `range $i, $m := X` / `range X`,
`if`/`else if`/`else`/`end`; `$x := X` and `$x = X`; fields (`.Role`, `$.Messages`, `$m.Content`); string
and integer literals; parenthesised calls of `eq ne and or not len slice index`. Anything else is an error
naming it, never a silent difference: no template Python cannot render exactly is trusted.
"""
from __future__ import annotations

import re

from tunelab.errors import TunelabError

ACTION = re.compile(r"{{(-\s)?(.*?)(\s-)?}}", re.S)
TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+)|(?P<open>\()|(?P<close>\))|'
                   r'(?P<word>[$.\w][\w.$]*|:=|=|,))')


class TemplateError(TunelabError):
    pass


def parse(template: str) -> list:
    """The template as a tree: strings, ("out", expr), ("set", name, expr, declare), ("if", [(cond, body)...],
    else_body), ("range", names, expr, body)."""
    pieces, position, trim_next = [], 0, False
    for match in ACTION.finditer(template):
        text = template[position:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        pieces.append(text)
        pieces.append(("action", match.group(2).strip()))
        trim_next, position = bool(match.group(3)), match.end()
    tail = template[position:]
    pieces.append(tail.lstrip() if trim_next else tail)
    return _block(pieces, 0, top=True)[0]


def _block(pieces: list, index: int, top: bool = False) -> tuple[list, int]:
    body = []
    while index < len(pieces):
        piece = pieces[index]
        if isinstance(piece, str):
            if piece:
                body.append(piece)
            index += 1
            continue
        words = piece[1]
        keyword = words.split(None, 1)[0] if words else ""
        if keyword in ("end", "else"):
            if top:
                raise TemplateError(f"Ollama template: {{{{ {words} }}}} without an open block")
            return body, index
        if keyword == "if":
            node, index = _if(pieces, index)
            body.append(node)
        elif keyword == "range":
            node, index = _range(pieces, index)
            body.append(node)
        elif re.match(r"\$\w*\s*:?=", words):
            name, declare, expr = re.match(r"(\$\w*)\s*(:?=)\s*(.*)", words, re.S).groups()
            body.append(("set", name, _expr(expr), declare == ":="))
            index += 1
        else:
            body.append(("out", _expr(words)))
            index += 1
    if not top:
        raise TemplateError("Ollama template: a block is not closed with {{ end }}")
    return body, index


def _if(pieces: list, index: int) -> tuple[tuple, int]:
    branches, otherwise = [], []
    condition = pieces[index][1].split(None, 1)[1]
    while True:
        body, index = _block(pieces, index + 1)
        branches.append((_expr(condition), body))
        words = pieces[index][1]
        if words == "end":
            return ("if", branches, otherwise), index + 1
        if words.startswith("else if "):
            condition = words[len("else if "):]
            continue
        otherwise, index = _block(pieces, index + 1)
        if pieces[index][1] != "end":
            raise TemplateError("Ollama template: {{ else }} must be followed by {{ end }}")
        return ("if", branches, otherwise), index + 1


def _range(pieces: list, index: int) -> tuple[tuple, int]:
    words = pieces[index][1][len("range"):].strip()
    names = []
    if ":=" in words:
        left, words = words.split(":=", 1)
        names = [name.strip() for name in left.split(",")]
    body, index = _block(pieces, index + 1)
    if pieces[index][1] != "end":
        raise TemplateError("Ollama template: {{ range }} does not take {{ else }} here")
    return ("range", names, _expr(words.strip()), body), index + 1


def _expr(text: str):
    tokens = _tokens(text)
    expr, rest = _pipeline(tokens)
    if rest:
        raise TemplateError(f"Ollama template: cannot read {text!r}")
    return expr


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise TemplateError(f"Ollama template: cannot read {text[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _pipeline(tokens: list) -> tuple:
    """A command: an operand alone, or a function with its operands."""
    operands = []
    while tokens and tokens[0][0] != "close":
        operand, tokens = _operand(tokens)
        operands.append(operand)
    if not operands:
        raise TemplateError("Ollama template: an empty expression")
    if len(operands) == 1:
        return operands[0], tokens
    head = operands[0]
    if head[0] != "name":
        raise TemplateError(f"Ollama template: {head} is not a function")
    return ("call", head[1], operands[1:]), tokens


def _operand(tokens: list) -> tuple:
    kind, text = tokens[0]
    if kind == "open":
        inner, rest = _pipeline(tokens[1:])
        if not rest or rest[0][0] != "close":
            raise TemplateError("Ollama template: a '(' is not closed")
        return inner, rest[1:]
    if kind == "str":
        return ("lit", bytes(text[1:-1], "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")), \
            tokens[1:]
    if kind == "num":
        return ("lit", int(text)), tokens[1:]
    if text.startswith(".") or text.startswith("$"):
        return ("path", text), tokens[1:]
    if text in FUNCTIONS:
        return ("name", text), tokens[1:]
    raise TemplateError(f"Ollama template: unknown word {text!r}")


def _truth(value) -> bool:
    return bool(value)   # Go: false, 0, "", nil and empty collections are false


FUNCTIONS = {
    "eq": lambda a, *others: any(a == other for other in others),
    "ne": lambda a, b: a != b,
    "and": lambda *values: next((v for v in values if not _truth(v)), values[-1]),
    "or": lambda *values: next((v for v in values if _truth(v)), values[-1]),
    "not": lambda value: not _truth(value),
    "len": lambda value: len(value),
    "slice": lambda value, start, end=None: value[start:end],
    "index": lambda value, key: value[key],
}


def render(template: str, data: dict) -> str:
    out: list[str] = []
    _run(parse(template), data, [{"$": data}], data, out)
    return "".join(out)


def _run(body: list, dot, scopes: list[dict], root, out: list[str]) -> None:
    for node in body:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "out":
            value = _eval(node[1], dot, scopes)
            out.append("" if value is None else str(value))
        elif node[0] == "set":
            _, name, expr, declare = node
            value = _eval(expr, dot, scopes)
            if declare:
                scopes[-1][name] = value
            else:
                next(scope for scope in reversed(scopes) if name in scope)[name] = value
        elif node[0] == "if":
            for condition, branch in node[1]:
                if _truth(_eval(condition, dot, scopes)):
                    _run(branch, dot, scopes + [{}], root, out)
                    break
            else:
                _run(node[2], dot, scopes + [{}], root, out)
        else:
            _, names, expr, branch = node
            for index, item in enumerate(_eval(expr, dot, scopes) or []):
                scope = {}
                if len(names) == 2:
                    scope[names[0]], scope[names[1]] = index, item
                elif len(names) == 1:
                    scope[names[0]] = item
                _run(branch, item, scopes + [scope], root, out)


def _eval(expr, dot, scopes: list[dict]):
    kind = expr[0]
    if kind == "lit":
        return expr[1]
    if kind == "call":
        return FUNCTIONS[expr[1]](*(_eval(argument, dot, scopes) for argument in expr[2]))
    if kind == "name":
        raise TemplateError(f"Ollama template: {expr[1]} needs arguments")
    path = expr[1]
    if path == ".":
        return dot
    if path.startswith("$"):
        name, _, fields = path.partition(".")
        holder = next((scope for scope in reversed(scopes) if name in scope), None)
        if holder is None:
            raise TemplateError(f"Ollama template: undefined variable {name}")
        value = holder[name]
    else:
        value, fields = dot, path[1:]
    for field in filter(None, fields.split(".")):
        if not isinstance(value, dict) or field not in value:
            raise TemplateError(f"Ollama template: no field {field!r} in {path}")
        value = value[field]
    return value
