"""``data.mix`` source ``kv``: the JRT-Prompt key–value documents, answered, at their share, not the eval's."""

import re

import numpy as np

from birdie_jax.config import load_config
from birdie_jax.data.corpus import builtin_documents, corpus_documents
from birdie_jax.evals.jrt import kv_document

KEYS = ("Headquarters", "Founded", "Chief executive", "Founder", "Employees", "Product")
_QUERY = re.compile(rf"\. ({'|'.join(KEYS)}): ([^.]+)$")


def test_kv_documents_answer_from_their_attributes():
    cfg = load_config("hawk_tiny", "data.corpus=mix", "data.mix={builtin: 3, kv: 1}", "data.mix_kv_length=100")
    docs = corpus_documents(cfg.data)
    text = set(builtin_documents())
    kv = [d for d in docs if d not in text]
    assert kv and all(_QUERY.search(d) for d in kv)
    share = sum(map(len, kv)) / sum(map(len, docs))
    assert abs(share - 0.25) < 0.03, share
    for doc in kv[:50]:
        key, value = _QUERY.search(doc).groups()
        body = doc[: _QUERY.search(doc).start()]
        assert f"{key}: {value}." in body + "."  # the asked attribute is stated in the document
        assert body.count(f"{key}: ") == 1
    # The evaluation's key–value documents (seeds [seed, 7, i]) are never training documents.
    bodies = {_QUERY.split(d)[0] for d in kv}
    for i in range(32):
        doc, _, _ = kv_document(np.random.default_rng([0, 7, i]), sorted(text), 100)
        assert doc not in bodies
