"""A stationary synthetic corpus (``data.corpus: markov``) for length-generalization studies.

Each document is a run of a k-th order Markov chain over ``symbols`` letters ('a', 'b', ...).
Every context of k letters has its own next-letter distribution, drawn once from a symmetric
Dirichlet(``concentration``) by ``seed`` (small concentration: peaked, learnable rows). With
``topics`` > 1 there are that many transition tables and each document uses one, drawn at
random: the model then gains from reading further back (which table is this document's?), which
invites slowly decaying state channels, while the source stays stationary within a document.
With ``topics = 0`` every document draws its own table: the model must learn each document's
transitions in context (an associative recall task that keeps improving with context).

A document starts from a context drawn from its chain's stationary distribution, so the best
achievable loss does not depend on the position in a document once its table is known:
:func:`entropy_rate` gives that floor (nats per letter) for a known table.
"""

import dataclasses

import numpy as np

from birdie_jax.errors import DataError

MARKOV = "markov"
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass(frozen=True)
class MarkovSource:
    """The chain's shape and the corpus size (all documents equally long)."""

    order: int = 2
    symbols: int = 8
    topics: int = 1
    concentration: float = 0.3
    documents: int = 200
    doc_len: int = 4096
    seed: int = 0

    def __post_init__(self):
        if not 2 <= self.symbols <= len(ALPHABET):
            raise DataError(f"data.markov_symbols must be in [2, {len(ALPHABET)}], got {self.symbols}")
        if self.order < 0 or self.symbols ** self.order > 1 << 16:
            raise DataError(f"data.markov_order={self.order} with {self.symbols} symbols gives "
                            f"{self.symbols ** self.order} contexts; keep it >= 0 and at most 65536")
        if self.topics < 0:
            raise DataError(f"data.markov_topics must be >= 0 (0: a table per document), got {self.topics}")
        for name in ("documents", "doc_len"):
            if getattr(self, name) < 1:
                raise DataError(f"data.markov_{name} must be >= 1, got {getattr(self, name)}")
        if self.concentration <= 0:
            raise DataError(f"data.markov_concentration must be > 0, got {self.concentration}")

    def tables(self, count: int | None = None, salt: int = 7919) -> np.ndarray:
        """float64[count (default topics), symbols**order, symbols]: next-letter probabilities per context."""
        rng = np.random.default_rng([self.seed, salt])
        shape = (self.topics if count is None else count, self.symbols ** self.order)
        return rng.dirichlet(np.full(self.symbols, self.concentration), size=shape)


def stationary_contexts(table: np.ndarray, symbols: int, order: int) -> np.ndarray:
    """float64[symbols**order]: the stationary distribution over contexts (power iteration)."""
    n = table.shape[0]
    if order == 0:
        return np.ones(1)
    # Context c followed by letter s is context (c mod symbols**(order-1))·symbols + s.
    following = (np.arange(n)[:, None] % symbols ** (order - 1)) * symbols + np.arange(symbols)[None, :]
    moves = np.zeros((n, n))
    np.add.at(moves, (np.repeat(np.arange(n), symbols), following.ravel()), table.ravel())
    pi = np.full(n, 1.0 / n)
    for _ in range(10000):
        nxt = 0.5 * (pi + pi @ moves)  # lazy chain: same stationary law, no periodic oscillation
        if np.abs(nxt - pi).max() < 1e-14:
            break
        pi = nxt
    return nxt / nxt.sum()


def entropy_rate(table: np.ndarray, symbols: int, order: int) -> float:
    """Nats per letter of the chain (the best achievable NLL once its table is known)."""
    pi = stationary_contexts(table, symbols, order)
    h = -(table * np.log(np.clip(table, 1e-300, None))).sum(-1)
    return float((pi * h).sum())


def markov_documents(source: MarkovSource) -> list[str]:
    """The corpus: ``source.documents`` strings of ``source.doc_len`` letters (deterministic)."""
    per_document = source.topics == 0
    tables = source.tables(source.documents, salt=15485863) if per_document else source.tables()
    rng = np.random.default_rng([source.seed, 104729])
    s, k = source.symbols, source.order
    starts = [stationary_contexts(t, s, k) for t in tables]
    letters = np.array(list(ALPHABET[:s]))
    shift = s ** max(k - 1, 0)
    docs = []
    for _ in range(source.documents):
        topic = len(docs) if per_document else int(rng.integers(source.topics))
        cumulative = np.cumsum(tables[topic], axis=-1)
        context = int(rng.choice(len(starts[topic]), p=starts[topic]))
        uniforms = rng.random(source.doc_len)
        out = np.empty(source.doc_len, int)
        for i in range(source.doc_len):
            row = cumulative[context]
            out[i] = letter = min(int(np.searchsorted(row, uniforms[i] * row[-1], side="right")), s - 1)
            context = (context % shift) * s + letter if k else 0
        docs.append("".join(letters[out]))
    return docs
