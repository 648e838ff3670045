"""The lexical zero-shot baseline: one entity's text naming the other (docs/method.md, "The
lexical baseline").

Dictionary-style texts define an entity by a broader one ("working dog: any of several breeds
of usually large powerful dogs ...") and name its parts, members and fields, so whether one
entity's text mentions the other's name is evidence for a link, read without any encoder:

    lexical(h, t) = <text_h, name_t> + <name_h, text_t>,   lexical(e, e) = 0

where ``text_e`` and ``name_e`` are TF-IDF vectors (L2-normalised) of the words of the entity's
manifest texts and of its name (``zero_shot.name_source``): lower-cased runs of letters,
stop words and single letters dropped, a plural ending stripped; ``idf(w) = ln(D / (1 + df(w)))``
over the ``D = 2E`` documents (every name and every text), floored at 0. Texts and names are
model inputs, not labels, so the weights read every entity's. The score is symmetric and the
same for every relation: the blend's weight per relation and side
(``evaluation.lexical_blend``) decides where it counts.

The ``E x E`` matrix is sparse (entities sharing a word) and built once; a query batch reads
its rows.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence

import torch

from vlkge.errors import VlkgeError
from vlkge.evaluation.new_anchors import NewAnchors
from vlkge.evaluation.ranking import ScoreFn
from vlkge.terms import check_side

#: words too common in definitions to say anything about a link
STOPWORDS = frozenset(
    "a about all also an and any are as at be been but by can each for from has have in into "
    "is it its more most not of on one or other such than that the their them these they this "
    "those to used usually was were when which who with".split()
)
_WORD = re.compile(r"[^\W\d_]+")
#: the most (text, name) pairs sharing a word the matrix may be built from (about 4 GB)
MAX_PAIRS = 300_000_000


def words(text: str) -> list[str]:
    """The words the lexical baseline matches (the module docstring's rule)."""
    return [_singular(w) for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in STOPWORDS]


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


class LexicalScorer:
    """A ``ScoreFn`` source of the lexical baseline over ``names`` and ``texts`` (one string
    per entity, ``""`` for none), the interface of
    :class:`~vlkge.evaluation.zero_shot.ZeroShotScorer`."""

    def __init__(self, names: Sequence[str], texts: Sequence[str]):
        if len(names) != len(texts):
            raise ValueError(f"{len(names)} names but {len(texts)} texts")
        self.count = len(names)
        name_words = [words(n) for n in names]
        text_words = [words(t) for t in texts]
        df = Counter(w for doc in (*name_words, *text_words) for w in set(doc))
        vocab = {w: i for i, w in enumerate(df)}
        idf = torch.tensor([float(2 * self.count / (1 + c)) for c in df.values()]).log()
        idf = idf.clamp(min=0)
        with warnings.catch_warnings():  # torch's notes that its sparse support is beta
            warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
            name_vec = _tfidf(name_words, vocab, idf)
            text_vec = _tfidf(text_words, vocab, idf)
            _check_size(name_vec, text_vec)
            one_way = torch.sparse.mm(text_vec, name_vec.t()).coalesce()
            both = (one_way + one_way.t()).coalesce()
            rows, cols = both.indices()
            keep = rows != cols
            matrix = torch.sparse_coo_tensor(
                both.indices()[:, keep], both.values()[keep], (self.count, self.count)
            ).to_sparse_csr()
            self._vocab, self._idf = vocab, idf  # what a new entity's words are weighed by
            self._names, self._texts = name_vec.to_sparse_csr(), text_vec.to_sparse_csr()
        self._starts = matrix.crow_indices()
        self._columns = matrix.col_indices()
        self._values = matrix.values()
        self.vocabulary = len(vocab)
        self.pairs = len(self._values)  # nonzero (h, t) scores, both orders

    def rows(self, anchor: torch.Tensor) -> torch.Tensor:
        """``[len(anchor), E]`` dense scores of each anchor against every entity."""
        anchor = anchor.cpu()
        start, end = self._starts[anchor], self._starts[anchor + 1]
        lengths = end - start
        row = torch.repeat_interleave(torch.arange(len(anchor)), lengths)
        first = torch.cumsum(lengths, 0) - lengths  # where each row's entries begin
        position = torch.arange(int(lengths.sum())) - first[row] + start[row]
        out = torch.zeros(len(anchor), self.count)
        out[row, self._columns[position]] = self._values[position]
        return out

    def new_rows(self, names: Sequence[str], texts: Sequence[str]) -> torch.Tensor:
        """``[n, E]`` scores of ``n`` entities outside the graph, given by their names and
        texts, against every entity: the formula with the graph's vocabulary and idf (a word
        no entity of the graph has names nothing)."""
        docs = [[w for w in words(doc) if w in self._vocab] for doc in (*names, *texts)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
            vectors = _tfidf(docs, self._vocab, self._idf).to_dense()
            name_vec, text_vec = vectors[: len(names)], vectors[len(names) :]
            # <text_new, name_t> + <name_new, text_t>, as [E, n] products of the sparse tables
            out = self._names @ text_vec.T + self._texts @ name_vec.T
        return out.T.contiguous()

    def scorer(self, pool: torch.Tensor | None = None) -> ScoreFn:
        """The scorer for one evaluated split (``pool`` is unused: the ranking applies
        candidate pools, and the scores cost nothing to compute for every entity). Called
        with ``new`` (:mod:`vlkge.evaluation.new_anchors`), it scores those entities."""

        def score(
            side: str,
            anchor: torch.Tensor,
            relation: torch.Tensor,
            span: tuple[int, int] | None = None,
            new: NewAnchors | None = None,
        ) -> torch.Tensor:
            check_side(side)
            if new is None:
                out = self.rows(anchor)  # symmetric: a head query reads the same row
            else:
                rows = anchor.tolist()
                out = self.new_rows([new.names[i] for i in rows], [new.texts[i] for i in rows])
            return out if span is None else out[:, span[0] : span[1]]

        return score

    def __call__(self, side: str, anchor: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """Scores against every entity."""
        return self.scorer()(side, anchor, relation)


def _check_size(name_vec: torch.Tensor, text_vec: torch.Tensor) -> None:
    """One line, before anything large is allocated, for a graph whose texts and names share
    too many words to hold their products (each shared word pairs every text with every name)."""
    width = name_vec.shape[1]
    in_names = torch.bincount(name_vec.indices()[1], minlength=width)
    in_texts = torch.bincount(text_vec.indices()[1], minlength=width)
    pairs = int((in_names * in_texts).sum())
    if pairs > MAX_PAIRS:
        raise VlkgeError(
            f"the lexical baseline would multiply {pairs:,} (text, name) pairs sharing a word, "
            f"more than {MAX_PAIRS:,}: this graph's texts are too alike or too many for it"
        )


def _tfidf(docs: list[list[str]], vocab: dict[str, int], idf: torch.Tensor) -> torch.Tensor:
    """Sparse ``[len(docs), V]`` TF-IDF rows, each L2-normalised (an empty one stays zero)."""
    rows, cols, counts = [], [], []
    for i, doc in enumerate(docs):
        for word, count in Counter(doc).items():
            rows.append(i)
            cols.append(vocab[word])
            counts.append(count)
    rows_t = torch.tensor(rows, dtype=torch.long)
    cols_t = torch.tensor(cols, dtype=torch.long)
    values = torch.tensor(counts, dtype=torch.float32) * idf[cols_t]
    norms = torch.zeros(len(docs)).index_add_(0, rows_t, values.square()).sqrt()
    values = values / norms[rows_t].clamp(min=1e-12)
    indices = torch.stack([rows_t, cols_t]) if rows else torch.zeros(2, 0, dtype=torch.long)
    return torch.sparse_coo_tensor(indices, values, (len(docs), len(vocab))).coalesce()
