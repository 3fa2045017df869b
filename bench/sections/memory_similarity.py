"""Memory similarity: precision and recall of near-duplicate detection on labelled pairs.

``bench/data/memory_pairs.jsonl`` holds hand-written pairs of memories: paraphrases (the same
fact in other words, ``duplicate: true``) and look-alikes (the same topic and most of the
words, another fact: ``duplicate: false``). The set is split once and for all: lines 1, 3,
5, ... (0-based even indexes) are the **tune** half, on which the configured thresholds were
chosen; lines 2, 4, 6, ... are the **report** half, on which every target figure is measured.
A pair is called a duplicate when its score reaches the threshold.

Three similarities:
- the local lexical similarity at ``memory_lexical_threshold`` (the default: no model);
- embeddings through ``OpenAIEmbedder`` and the fake OpenAI server: its vectors are hashes of
  the text, so the figures prove the plumbing (batches, order, cosine, threshold), nothing
  about meaning;
- the local MiniLM embedder at ``memory_embedding_threshold``, when the ``local-embeddings``
  extra is installed (else one figure says it is not available).

Every figure is deterministic: repetitions recompute it and agree. The section needs no store.

    python -m bench.sections.memory_similarity     # the sweep on both halves, no stores
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.figures import Figure, Samples, Target, summarize
from bench.section import Section
from config.settings import Settings
from core.memories import embeddings, similarity
from core.memories.embeddings import Embedder, LocalEmbedder, OpenAIEmbedder
from tests.fakes.openai_server import FakeOpenAI

if TYPE_CHECKING:
    from bench.context import BenchContext

PAIRS_PATH = Path(__file__).resolve().parents[1] / "data" / "memory_pairs.jsonl"
# The promise for the local MiniLM embedder, on the report half.
PRECISION_TARGET = Target(">=", 95.0)
RECALL_TARGET = Target(">=", 80.0)
# How the defaults are chosen on the tune half, precision first (a false merge loses a fact;
# a missed one only keeps a duplicate): the lowest threshold whose precision reaches the
# target; when none does, the lowest threshold of the highest precision seen.
CHOSEN_PRECISION = 0.95
CLUSTER_ITEMS = 1000


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    duplicate: bool
    kind: str


@dataclass(frozen=True)
class Rates:
    precision: float
    recall: float
    f1: float


def load_pairs(path: Path = PAIRS_PATH) -> list[Pair]:
    pairs = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            pairs.append(Pair(row["a"], row["b"], bool(row["duplicate"]), row["kind"]))
    return pairs


def halves(pairs: Sequence[Pair]) -> tuple[list[Pair], list[Pair]]:
    """(tune, report): the fixed split, even and odd 0-based line indexes."""
    return list(pairs[0::2]), list(pairs[1::2])


def rates(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> Rates:
    """Precision, recall and F1 of "duplicate when score >= threshold" (0 when undefined)."""
    called = [score >= threshold for score in scores]
    tp = sum(c and label for c, label in zip(called, labels, strict=True))
    fp = sum(c and not label for c, label in zip(called, labels, strict=True))
    fn = sum(label and not c for c, label in zip(called, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Rates(precision, recall, f1)


def best_threshold(
    scores: Sequence[float], labels: Sequence[bool], *, beta: float = 1.0
) -> tuple[float, float]:
    """(threshold, F-beta) of the best F-beta over every distinct score as a threshold."""
    best = (1.0, -1.0)
    for threshold in sorted(set(scores), reverse=True):
        r = rates(scores, labels, threshold)
        b2 = beta * beta
        denominator = b2 * r.precision + r.recall
        value = (1 + b2) * r.precision * r.recall / denominator if denominator else 0.0
        if value > best[1]:
            best = (threshold, value)
    return best


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The chance that a random duplicate outscores a random non-duplicate (ties count half):
    0.5 is a coin, 1.0 separates them at some threshold."""
    positives = [score for score, label in zip(scores, labels, strict=True) if label]
    negatives = [score for score, label in zip(scores, labels, strict=True) if not label]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives)) if positives and negatives else 0.5


def precise_threshold(
    scores: Sequence[float], labels: Sequence[bool], *, precision: float = CHOSEN_PRECISION
) -> float:
    """The lowest threshold (a distinct score) whose precision reaches ``precision``; when
    none does, the lowest one of the highest precision reached."""
    reaching: float | None = None
    fallback = (-1.0, 1.0)
    for threshold in sorted(set(scores), reverse=True):
        value = rates(scores, labels, threshold).precision
        if value >= precision:
            reaching = threshold
        if value >= fallback[0]:
            fallback = (value, threshold)
    return reaching if reaching is not None else fallback[1]


def lexical_scores(pairs: Sequence[Pair]) -> list[float]:
    similarity.profile.cache_clear()  # each repetition computes from scratch
    return [similarity.lexical_similarity(pair.a, pair.b) for pair in pairs]


def embedding_scores(embedder: Embedder, pairs: Sequence[Pair]) -> list[float]:
    texts = [pair.a for pair in pairs] + [pair.b for pair in pairs]
    vectors = embedder.embed(texts)
    count = len(pairs)
    return [max(0.0, similarity.cosine(vectors[i], vectors[count + i])) for i in range(count)]


def cluster_texts(pairs: Sequence[Pair], count: int = CLUSTER_ITEMS) -> list[str]:
    """``count`` memories of one subject: the set's texts, then reworded copies of them."""
    texts = list(dict.fromkeys(text for pair in pairs for text in (pair.a, pair.b)))
    variants = [f"Note: {text.lower()}" for text in texts]
    variants += [f"Remember that {text}!" for text in texts]
    return (texts + variants)[:count]


def _method_figures(
    key: str,
    label: str,
    samples: Samples,
    *,
    threshold: float,
    targets: bool = False,
    note: str = "",
) -> list[Figure]:
    figures = [
        summarize(
            f"similarity.{key}.precision",
            f"{label}: precision (report half)",
            "%",
            samples[f"{key}.precision"],
            target=PRECISION_TARGET if targets else None,
            note=note,
        ),
        summarize(
            f"similarity.{key}.recall",
            f"{label}: recall (report half)",
            "%",
            samples[f"{key}.recall"],
            target=RECALL_TARGET if targets else None,
        ),
        summarize(f"similarity.{key}.f1", f"{label}: F1 (report half)", "%", samples[f"{key}.f1"]),
        summarize(
            f"similarity.{key}.auc",
            f"{label}: P(paraphrase outscores look-alike) (report half)",
            "x",
            samples[f"{key}.auc"],
        ),
        summarize(
            f"similarity.{key}.threshold",
            f"{label}: configured threshold",
            "score",
            [threshold] * len(samples[f"{key}.f1"]),
        ),
        summarize(
            f"similarity.{key}.tuned_threshold",
            f"{label}: chosen threshold (tune half, precision first)",
            "score",
            samples[f"{key}.tuned"],
        ),
        summarize(
            f"similarity.{key}.best_f1_threshold",
            f"{label}: best-F1 threshold (whole set, for information)",
            "score",
            samples[f"{key}.best_f1_threshold"],
        ),
        summarize(
            f"similarity.{key}.best_f1",
            f"{label}: F1 at that threshold (whole set, for information)",
            "%",
            samples[f"{key}.best_f1"],
        ),
    ]
    return figures


def _measure(
    key: str,
    score: Callable[[Sequence[Pair]], list[float]],
    pairs: Sequence[Pair],
    threshold: float,
    samples: Samples,
) -> None:
    tune, report = halves(pairs)
    tune_scores, report_scores = score(tune), score(report)
    measured = rates(report_scores, [pair.duplicate for pair in report], threshold)
    samples.add(f"{key}.precision", 100 * measured.precision)
    samples.add(f"{key}.recall", 100 * measured.recall)
    samples.add(f"{key}.f1", 100 * measured.f1)
    samples.add(f"{key}.auc", auc(report_scores, [pair.duplicate for pair in report]))
    samples.add(
        f"{key}.tuned",
        precise_threshold(tune_scores, [pair.duplicate for pair in tune]),
    )
    everything = tune + report
    best, f1 = best_threshold(tune_scores + report_scores, [pair.duplicate for pair in everything])
    samples.add(f"{key}.best_f1_threshold", best)
    samples.add(f"{key}.best_f1", 100 * f1)


def run(ctx: BenchContext) -> list[Figure]:
    return measure(ctx.settings, repetitions=ctx.config.repetitions)


def measure(settings: Settings, *, repetitions: int) -> list[Figure]:
    """Every figure of the section (no store needed)."""
    pairs = load_pairs()
    samples = Samples()
    local = LocalEmbedder() if embeddings.local_extra_installed() else None
    load_s = 0.0
    if local is not None:
        began = time.perf_counter()
        local.load()
        load_s = time.perf_counter() - began
    texts = cluster_texts(pairs)
    with FakeOpenAI() as fake:
        remote = OpenAIEmbedder(
            api_key="sk-bench", model="text-embedding-3-small", base_url=fake.url, batch_size=64
        )
        for _ in range(repetitions):
            lexical = settings.memory_lexical_threshold
            _measure("lexical", lexical_scores, pairs, lexical, samples)
            began = time.perf_counter()
            groups = similarity.near_duplicates(
                similarity.LexicalSimilarity(texts, threshold=lexical)
            )
            samples.add("lexical.cluster_ms", 1000 * (time.perf_counter() - began))
            samples.add("lexical.groups", len(groups))
            requests_before = len(fake.requests("/v1/embeddings"))
            _measure(
                "fake",
                lambda chosen: embedding_scores(remote, chosen),
                pairs,
                settings.memory_embedding_threshold,
                samples,
            )
            samples.add("fake.requests", len(fake.requests("/v1/embeddings")) - requests_before)
            if local is not None:
                _measure(
                    "minilm",
                    lambda chosen: embedding_scores(local, chosen),
                    pairs,
                    settings.memory_embedding_threshold,
                    samples,
                )
            samples.add("minilm.available", 1.0 if local is not None else 0.0)
    _, report = halves(pairs)
    counts = (
        f"{len(report)} report pairs ({sum(p.duplicate for p in report)} duplicates) of "
        f"{len(pairs)}"
    )
    figures = _method_figures(
        "lexical",
        "lexical",
        samples,
        threshold=settings.memory_lexical_threshold,
        note=f"{similarity.LEXICAL_NAME} on {counts}; no model, no network",
    )
    figures.append(
        summarize(
            "similarity.lexical.cluster_ms",
            f"lexical: group {len(texts):,} memories of one subject",
            "ms",
            samples["lexical.cluster_ms"],
            note=f"{int(samples['lexical.groups'][0])} groups; complete linkage with "
            "prefix-filtered candidates",
        )
    )
    figures += _method_figures(
        "fake",
        "embeddings via the fake server",
        samples,
        threshold=settings.memory_embedding_threshold,
        note="plumbing only: the fake's vectors are hashes of the text, unrelated to meaning; "
        "what it shows is that every text got its vector, in order, in batches of 64",
    )
    figures.append(
        summarize(
            "similarity.fake.requests",
            "embeddings via the fake server: requests per run",
            "requests",
            samples["fake.requests"],
        )
    )
    if local is not None:
        figures += _method_figures(
            "minilm",
            "local MiniLM",
            samples,
            threshold=settings.memory_embedding_threshold,
            targets=True,
            note=f"{LocalEmbedder.name} (cosine), model loaded in {load_s:.1f} s",
        )
    figures.append(
        summarize(
            "similarity.minilm.available",
            "local MiniLM embedder installed",
            "yes=1",
            samples["minilm.available"],
            note=""
            if local is not None
            else "not available: the local-embeddings extra is "
            "not installed, so no MiniLM figure (docs/memory-similarity.md)",
        )
    )
    return figures


SECTION = Section(
    key="memory_similarity",
    title="9. Memory similarity: near-duplicate precision and recall on labelled pairs",
    run=run,
    notes="Hand-written pairs (bench/data/memory_pairs.jsonl): paraphrases of one fact and "
    "look-alikes that state another. The embedding threshold was chosen on the tune half (even "
    "0-based lines: the lowest threshold of precision >= 0.95 there; the 'chosen threshold' "
    "rows redo that choice); the lexical one is set lower by design (docs/memory-similarity.md). "
    "Precision, recall and F1 are measured on the report half (odd lines) at the configured "
    "thresholds. Deterministic: repetitions agree.",
)


def main() -> None:
    """Print the sweep on both halves, for choosing thresholds (no stores)."""
    pairs = load_pairs()
    tune, report = halves(pairs)
    scorers: dict[str, Callable[[Sequence[Pair]], list[float]]] = {"lexical": lexical_scores}
    if embeddings.local_extra_installed():
        local = LocalEmbedder()
        scorers["minilm"] = lambda chosen: embedding_scores(local, chosen)
    for name, score in scorers.items():
        tune_scores = score(tune)
        labels = [pair.duplicate for pair in tune]
        threshold = precise_threshold(tune_scores, labels)
        tuned = rates(tune_scores, labels, threshold)
        print(
            f"{name}: tune half, chosen threshold {threshold:.3f} "
            f"(P {tuned.precision:.3f} R {tuned.recall:.3f})"
        )
        # Only the chosen threshold is looked at on the report half: choosing there would
        # make its figures optimistic.
        chosen = round(threshold, 2)
        r = rates(score(report), [pair.duplicate for pair in report], chosen)
        print(f"  report half at {chosen:.2f}: P {r.precision:.3f} R {r.recall:.3f} F1 {r.f1:.3f}")


if __name__ == "__main__":
    main()
