"""JRT-Prompt (Just Read Twice, arXiv 2407.05483 §4): repeat the context before answering.

A recurrent model reading A(C, Q) must decide what to keep before it knows the question;
reading A(C, Q, C, Q) — here in the paper's templates — lets the second pass keep what
the question needs. Works with any model (causal or bidirectional); see ``jrt.md`` §4.

Templates (default → JRT):
  kv (SWDE, FDA):           ``{doc}. {Key}:`` → ``Information about {Key}. {doc}.\\n{doc}. {Key}:``
  qa (NQ, TriviaQA, Drop):  ``{context}. {cloze}`` → ``{question} {context}.\\n{context}. {cloze}``
  squad:                    ``{text}`` → ``{question} {context}\\n{text}``  (text = context + cloze)
"""

import numpy as np

TEMPLATES = ("kv", "qa", "squad")


def _key_name(key: str) -> str:
    """Attribute name with its first letter capitalised ("year founded" → "Year founded")."""
    key = key.strip()
    return key[:1].upper() + key[1:]


def _strip_trailing_key(doc: str, key: str) -> str:
    """Drops a trailing ``key:`` from the document so the prompt ends with exactly one."""
    stripped = doc.rstrip()
    suffix = f"{key.strip()}:"
    if stripped.lower().endswith(suffix.lower()):
        stripped = stripped[: -len(suffix)].rstrip()
    return stripped.rstrip(".")


def jrt_prompt(template: str, *, context: str, question: str, cloze: str | None = None, repeat: bool = True) -> str:
    """The prompt for one example, read twice (``repeat=True``) or once (the default prompt).

    Args:
      template: ``kv`` (question = the attribute key), ``qa`` or ``squad``.
      context: the document.
      question: the question (qa, squad) or the attribute name (kv).
      cloze: the question rewritten as a statement to complete (qa, squad); defaults to the question.
      repeat: JRT-Prompt when True, the paper's default prompt when False.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown JRT template {template!r}; choose one of {', '.join(TEMPLATES)}")
    cloze = question if cloze is None else cloze
    if template == "kv":
        key = _key_name(question)
        doc = _strip_trailing_key(context, question)
        return f"Information about {key}. {doc}.\n{doc}. {key}:" if repeat else f"{doc}. {key}:"
    if template == "qa":
        context = context.rstrip().rstrip(".")
        return f"{question} {context}.\n{context}. {cloze}" if repeat else f"{context}. {cloze}"
    text = f"{context} {cloze}"
    return f"{question} {context}\n{text}" if repeat else text


def truncate_around_answer(tokens: np.ndarray, answer: np.ndarray, max_tokens: int = 950) -> np.ndarray:
    """At most ``max_tokens`` of context in a window around the answer's first occurrence
    (at most half of the window before it), as in the paper's evaluation; the twice
    prompt repeats this same truncated context."""
    tokens = np.asarray(tokens)
    if len(tokens) <= max_tokens:
        return tokens
    answer = np.asarray(answer)
    hits = [i for i in range(len(tokens) - len(answer) + 1) if len(answer) and np.array_equal(tokens[i:i + len(answer)], answer)]
    first = hits[0] if hits else 0
    start = max(0, min(first - max_tokens // 2, len(tokens) - max_tokens))
    return tokens[start:start + max_tokens]
