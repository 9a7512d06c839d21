"""The yield report of a teaching run: how much usable reasoning the teacher produced, what was cut, failed or
left out, and what it cost (the token ledger)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

STAGES = ("rationale", "answer", "annotations")
"""The ledger's stages: the rationale (stage 1, or the one reply of one-stage and reasoning replies), the stage-2
answer, the Teacher-LM annotations."""
STAGE_KEYS = ("requests", "cache_hits", "retries", "timeouts", "failed", "failed_billed", "unsent", "prompt_tokens",
              "completion_tokens", "billed_prompt_tokens", "billed_completion_tokens")  # fmt: skip
"""What the ledger counts per stage (:attr:`YieldReport.stages`)."""


@dataclass
class YieldReport:
    """How much usable reasoning the teacher produced for one task."""

    task: str
    teacher: str
    degree: int
    temperature: float
    questions: int = 0
    samples: int = 0
    correct: int = 0
    kept: int = 0
    questions_without_correct: int = 0
    duplicates: int = 0
    """Kept rows whose rationale repeats another kept rationale of the same question."""
    extra_samples: int = 0
    """Samples drawn by resample-until-k on top of the D per question."""
    skipped_rows: int = 0
    """Rows of a user dataset left out because their gold answer could not be read (``--skip_bad_rows``)."""
    rationale_truncated: int = 0
    """Rationales (stage 1) cut by the token limit (``finish_reason == "length"``)."""
    answer_truncated: int = 0
    """Stage-2 answers cut by the token limit."""
    truncated_dropped: int = 0
    """Correct samples that were not kept because their rationale or answer was cut (``keep_truncated=False``)."""
    incomplete: int = 0
    """Replies whose reasoning trace never closed: never kept."""
    empty: int = 0
    """Samples whose rationale or answer is empty (a reply with no text): never kept by ``--keep correct``."""
    protocol: str = "two_stage"
    requests: int = 0
    """Teacher requests sent (not served by the request cache)."""
    cache_hits: int = 0
    """Samples served by the request cache."""
    reasked_unusable: int = 0
    """Cached samples not served because they were unusable (empty, null, reasoning-only: ``--retry_unusable``),
    asked again instead."""
    prompt_tokens: int = 0
    """Prompt tokens of every sample's requests (as the server counted them, cached ones included), plus those of
    the failed-but-billed answers."""
    completion_tokens: int = 0
    decontamination: dict[str, Any] | None = None
    """Train/test overlap of the task and test 8-grams in the kept rationales (:func:`decontamination_summary`)."""
    cost: float | None = None
    """In $, when prices are given: the tokens billed for the requests actually sent in this run (every answer the
    server sent, failed-but-billed ones included; cache hits cost nothing). For a backend that reports no billing (a
    local model), the prompt and completion tokens above."""
    failed_requests: int = 0
    """Teacher requests that failed for good (retries spent): their samples have no row and are not cached, so the
    dataset is incomplete until the same command is run again (it sends only these)."""
    retries: int = 0
    """Attempts repeated: backoff rounds after 5xx/429/timeouts/dropped connections, and malformed answers re-asked."""
    timeouts: int = 0
    """Attempts that timed out (each retried, or the request failed)."""
    failed_billed: int = 0
    """Answers the server billed (its ``usage`` says so) that could not be used: malformed, the wrong number of
    choices, or samples of a request that then failed. Their tokens are in the totals and the cost."""
    unsent_requests: int = 0
    """Requests not sent because the budget (``--max_requests`` / ``--max_cost``) was spent."""
    billed_prompt_tokens: int | None = None
    """Tokens the server billed in this run (None: the backend reports no billing)."""
    billed_completion_tokens: int | None = None
    stopped: str | None = None
    """Why teaching stopped before the end (the budget), or None."""
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    """The ledger per stage (``rationale``, ``answer``, ``annotations``): :data:`STAGE_KEYS`."""
    filters: dict[str, int] = field(default_factory=dict)
    """Rows each filter of the data recipe removed, in the order they ran, each among the rows the filters before it
    kept (``incorrect``, ``truncated``, ``empty``, ``pass_rate``, ``student_length``, ``near_duplicate``:
    :mod:`ftcot_hf.teach.recipe`); only the filters the run used. ``samples`` minus their sum is ``kept``."""
    shard: dict[str, int] | None = None
    """The part of the questions a ``--num_shards`` run taught (``index``, ``num_shards``; questions ``start`` to
    ``end`` of ``questions``), which ``ftcot merge`` checks; None for a whole run (and a merged one)."""

    @property
    def finish_length(self) -> int:
        """Rationales cut by the token limit: the older name of :attr:`rationale_truncated`."""
        return self.rationale_truncated

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"accuracy": round(self.accuracy, 4)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> YieldReport:
        """A report from :meth:`to_dict`'s output (``yield_report.json``); derived and unknown keys are ignored, an
        older file's ``finish_length`` is read as ``rationale_truncated``."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if "finish_length" in data and "rationale_truncated" not in data:
            values["rationale_truncated"] = data["finish_length"]
        return cls(**values)

    @staticmethod
    def markdown(reports: Sequence[YieldReport]) -> str:
        head = ("| task | teacher | D | T | questions | samples | correct | teacher acc. | kept | no correct | dup. | "
                "cut (rationale/answer) |")  # fmt: skip
        lines = [head, "|" + "---|" * 12]
        for r in reports:
            lines.append(
                f"| {r.task} | {r.teacher} | {r.degree} | {r.temperature} | {r.questions} | {r.samples} | "
                f"{r.correct} | {100 * r.accuracy:.2f}% | {r.kept} | {r.questions_without_correct} | {r.duplicates} | "
                f"{r.cut_cell()} |"
            )
        return "\n".join(lines)

    @staticmethod
    def filters_markdown(reports: Sequence[YieldReport]) -> str | None:
        """The rows each filter removed, per task (the filters run in the columns' order, each on the rows the ones
        before it kept); None when no report records its filters (an older run)."""
        rows = [r for r in reports if r.filters]
        if not rows:
            return None
        from ftcot_hf.teach.recipe import FILTERS

        used = [f for f in FILTERS if any(f in r.filters for r in rows)]
        lines = ["| task | samples | " + " | ".join(f"- {f.replace('_', ' ')}" for f in used) + " | = kept |",
                 "|" + "---|" * (len(used) + 3)]  # fmt: skip
        for r in rows:
            cells = " | ".join(str(r.filters[f]) if f in r.filters else "-" for f in used)
            lines.append(f"| {r.task} | {r.samples} | {cells} | {r.kept} |")
        return "\n".join(lines)

    @staticmethod
    def ledger_markdown(reports: Sequence[YieldReport]) -> str:
        """Requests, cache hits, retries, timeouts, failures, tokens and cost per task, then per task and stage (the
        token and cost ledger)."""
        lines = ["| task | protocol | requests sent | cached samples | prompt tokens | completion tokens | cost | "
                 "cost per kept rationale | retries | timeouts | failed (retries spent) | failed but billed | "
                 "not sent (budget) |", "|" + "---|" * 13]  # fmt: skip
        for r in reports:
            cost = "-" if r.cost is None else f"${r.cost:.4f}"
            per = "-" if r.cost is None or not r.kept else f"${r.cost / r.kept:.6f}"
            lines.append(f"| {r.task} | {r.protocol} | {r.requests} | {r.cache_hits} | {r.prompt_tokens} | "
                         f"{r.completion_tokens} | {cost} | {per} | {r.retries} | {r.timeouts} | "
                         f"{r.failed_requests} | {r.failed_billed} | {r.unsent_requests} |")  # fmt: skip
        staged = [r for r in reports if r.stages]
        if staged:
            lines += ["", "Per stage:", "", "| task | stage | requests sent | cached samples | retries | timeouts | "
                      "failed | failed but billed | not sent | prompt tokens | completion tokens |",
                      "|" + "---|" * 11]  # fmt: skip
            for r in staged:
                for stage, c in r.stages.items():
                    cells = [c.get(k, 0) for k in STAGE_KEYS if not k.startswith("billed_")]
                    lines.append(f"| {r.task} | {stage} | " + " | ".join(map(str, cells)) + " |")
        for r in reports:
            if r.stopped:
                lines += ["", f"{r.task}: stopped early: {r.stopped}."]
        return "\n".join(lines)

    def _by_stage(self, key: str) -> str:
        """`` (rationale 2, answer 1)``: ``key`` per stage, when more than one stage ran."""
        if len(self.stages) < 2:
            return ""
        parts = [f"{stage} {c.get(key, 0)}" for stage, c in self.stages.items() if c.get(key, 0)]
        return f" ({', '.join(parts)})" if parts else ""

    def _tokens(self) -> str:
        """The tokens the cost is computed from: those billed in this run where the server reports usage (so a run
        stopped between stages, whose billed replies have no rows, shows what it paid for), else the samples'."""
        if self.billed_prompt_tokens is not None:
            return f"{self.billed_prompt_tokens} prompt + {self.billed_completion_tokens} completion tokens billed"
        return f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens"

    def ledger_summary(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        retries = f"{self.retries} retr{'y' if self.retries == 1 else 'ies'}{self._by_stage('retries')}"
        line = (f"{self.task}: {self.requests} requests sent{self._by_stage('requests')}, {self.cache_hits} samples "
                f"from the cache, {retries}, "
                f"{n(self.timeouts, 'timeout')}{self._by_stage('timeouts')}, {self.failed_billed} failed but "
                f"billed{self._by_stage('failed_billed')}, {self._tokens()}")  # fmt: skip
        if self.cost is not None:
            per = f", ${self.cost / self.kept:.6f} per kept rationale" if self.kept else ""
            line += f", ${self.cost:.4f}{per}"
        if self.reasked_unusable:
            line += (f"; {self.reasked_unusable} unusable cached replies (empty or no answer) asked again "
                     "(--retry_unusable false replays them)")  # fmt: skip
        if self.incomplete:
            line += f"; {self.incomplete} reasoning traces never closed (not kept)"
        if self.empty:
            line += f"; {self.empty} samples with an empty rationale or answer (never kept by --keep correct)"
        if self.failed_requests:
            line += (f"; {self.failed_requests} requests FAILED (retries spent): their samples have no rows, the "
                     "dataset is incomplete")  # fmt: skip
        if self.stopped:
            line += f"; STOPPED, {self.stopped}: {self.unsent_requests} requests not sent"
        return line + "."

    @staticmethod
    def decontamination_markdown(reports: Sequence[YieldReport]) -> str:
        """One row per task: exact train/test duplicates (with ids), train questions sharing a word n-gram with a
        test question (near-duplicates among them), kept rationales holding a test question's n-gram."""
        rows = [r for r in reports if r.decontamination]
        if not rows:
            return "Not checked."
        n = rows[0].decontamination.get("ngram", 8)
        lines = [f"| task | exact train/test duplicates (train~test ids) | train questions sharing a {n}-gram with a "
                 "test question | near-duplicates | kept rationales with a test question's "
                 f"{n}-gram |", "|" + "---|" * 5]  # fmt: skip
        for r in rows:
            d = r.decontamination
            pairs = ", ".join(f"{a}~{b}" for a, b in d["exact_pairs"][:10]) + (" ..." if d["exact"] > 10 else "")
            lines.append(f"| {r.task} | {d['exact']}{f' ({pairs})' if pairs else ''} | {d['ngram_overlap']} of "
                         f"{d['n_train']} | {d['near_duplicates']} | {d['rationales']} |")  # fmt: skip
        return "\n".join(lines)

    def cut_cell(self) -> str:
        """The yield table's "cut" cell: rationales/answers two-stage; one-stage, each cut reply once."""
        if self.protocol == "two_stage":
            return f"{self.rationale_truncated}/{self.answer_truncated}"
        cut = max(self.rationale_truncated, self.answer_truncated)
        return f"{cut} {'reply' if cut == 1 else 'replies'}"

    def truncation_summary(self) -> str | None:
        """One line on the replies cut by the token limit (None when none was): how many per stage, and how many
        correct samples were left out because of it."""
        if not (self.rationale_truncated or self.answer_truncated):
            return None

        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        if self.protocol == "two_stage":
            line = (f"{self.task}: {n(self.rationale_truncated, 'rationale')} and "
                    f"{n(self.answer_truncated, 'answer')} cut by the token limit")  # fmt: skip
        else:  # one reply holds the rationale and the answer: a cut reply is counted once
            cut = max(self.rationale_truncated, self.answer_truncated)
            line = f"{self.task}: {cut} {'reply' if cut == 1 else 'replies'} cut by the token limit"
        if self.truncated_dropped:
            line += (f"; {n(self.truncated_dropped, 'correct sample')} among them not kept "
                     "(--keep_truncated true keeps them)")  # fmt: skip
        return line + "."


def decontamination_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a yield report keeps of ``ftcot_hf.teach.decontamination.decontamination_report``: counts, and the
    exact duplicate pairs by ``sample_index`` (the full report, with every id, is ``ftcot decontaminate``'s)."""
    rationales = report.get("rationales") or {}
    return {
        "ngram": report["ngram"],
        "n_train": report["n_train"],
        "n_test": report["n_test"],
        "exact": report["exact"]["count"],
        "exact_pairs": [[p["train"], p["test"]] for p in report["exact"].get("pairs", [])],
        "ngram_overlap": report["ngram_overlap"]["count"],
        "near_duplicates": len(report["ngram_overlap"].get("near_duplicate_train_ids", [])),
        "rationales": rationales.get("count", 0),
    }
