"""Persona attributes: a structured record of each kept persona, asked of the model with a JSON
schema and then held to the persona's own words.

A model asked to fill a form fills it: a persona that says nothing of age gets an age band, one with
no job gets a plausible job. So every value is checked against what the persona states, and a value
the persona does not support becomes ``unknown`` — never kept as a guess — with the reason in the
row's ``corrected`` column (a JSON object: attribute → why). ``unknown`` is an answer, not a failure;
only an answer that is not the JSON asked for is a ``rejects`` row. ``locale`` and ``language`` are
not asked: they come from the text's detected language and the persona's (:mod:`.language`).

The checks, per attribute:

* ``domain``, ``expertise_level``, ``age_band``: one of the values the template lists.
* ``occupation``: at least one of its words is one of the persona's (on a shared crude stem, so
  "nursing" is grounded by "nurse", "teacher" by "teaches"): an occupation is named, not inferred.
* ``age_band``: only when the persona states an age or a life stage, and one that agrees with it
  (:func:`stated_age_bands`: "retired" allows ``older adult``, "19-year-old" ``teen``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from personahub_dagster.core.lake.schemas import now_utc
from personahub_dagster.core.lake.tables import Lake
from personahub_dagster.core.llm.gateway import LLMGateway
from personahub_dagster.core.llm.results import LLMRequest, LLMResult
from personahub_dagster.core.stages.parsing import words
from personahub_dagster.core.stages.prompts import PromptTemplate
from personahub_dagster.core.stages.stage import Parsed, Progress, StageOutput, run_stage

UNKNOWN = "unknown"
ATTRIBUTES = ("domain", "occupation", "expertise_level", "age_band")
EXPERTISE = ("novice", "intermediate", "expert")
AGE_BANDS = ("child", "teen", "young adult", "adult", "older adult")
_YOUNG, _GROWN = ("child", "teen", "young adult"), ("young adult", "adult", "older adult")
# What a persona may say of age, and the bands each saying allows (first match wins).
AGE_CUES: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(p, re.IGNORECASE), bands)
    for p, bands in [
        (r"\b(in (his|her|their) )?teens\b|\bteen(age|ager)?s?\b|\badolescen", ("teen",)),
        (r"\b(in (his|her|their) )?(early |late )?twenties\b", ("young adult",)),
        (r"\b(in (his|her|their) )?(early |late )?(thirties|forties|fifties)\b|middle-aged", ("adult",)),
        (r"\b(in (his|her|their) )?(early |late )?(sixties|seventies|eighties|nineties)\b", ("older adult",)),
        (r"\bretire|\bpensioner|\belderly|\bsenior citizen", ("older adult",)),
        (r"\bgrand(mother|father|parent|ma|pa)", ("adult", "older adult")),
        (r"\b(child|kid|toddler|pupil|schoolboy|schoolgirl)s?\b", ("child", "teen")),
        (r"\b(undergraduate|student)s?\b", ("teen", "young adult", "adult")),
        (r"\byoung\b", _YOUNG),
        (r"\badults?\b|\b(mother|father|parent) of\b", _GROWN),
    ]
]
_AGE = re.compile(r"\b(\d{1,2})[- ]?(?:years?|yrs?)[- ]old\b|\baged? (\d{1,2})\b", re.IGNORECASE)


def stated_age_bands(persona: str) -> tuple[str, ...]:
    """The age bands ``persona`` allows by what it says (an age, a decade, a life stage); empty when
    it says nothing of age."""
    if m := _AGE.search(persona):
        age = int(m.group(1) or m.group(2))
        return (
            ("child",)
            if age < 13
            else ("teen",)
            if age < 20
            else ("young adult",)
            if age < 30
            else ("adult",)
            if age < 60
            else ("older adult",)
        )
    return next((bands for cue, bands in AGE_CUES if cue.search(persona)), ())


_JSON = re.compile(r"\{.*\}", re.DOTALL)
_LABEL_PREAMBLE = re.compile(
    r"^\W*(group( name)?\s*:|(the )?(group|name) is( called)?( an?| the)?\b)\s*", re.I
)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    domain: str = UNKNOWN
    occupation: str = UNKNOWN
    expertise_level: str = UNKNOWN
    age_band: str = UNKNOWN


_SUFFIX = re.compile(r"(ing|ers?|ists?|ians?|ors?|ed|es|s|e|y)$")


def _stems(text: str) -> set[str]:
    """Crude stems of the text's words of four letters or more: a suffix off, five letters kept
    ("nursing" and "nurse" → ``nurs``, "teacher" and "teaches" → ``teach``)."""
    return {_SUFFIX.sub("", w)[:5] for w in words(text) if len(w) >= 4}


def check_attributes(answer: dict, persona: str, domains: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The values kept (``unknown`` for what the persona does not support) and, per value set to
    ``unknown``, why."""
    given = {
        k: " ".join(str(v).split()).lower() for k, v in _Answer.model_validate(answer).model_dump().items()
    }
    values, why = dict(given), {}

    def drop(attribute: str, reason: str) -> None:
        values[attribute], why[attribute] = UNKNOWN, reason

    for attribute, allowed in (("domain", domains), ("expertise_level", EXPERTISE), ("age_band", AGE_BANDS)):
        if given[attribute] not in (*allowed, UNKNOWN):
            drop(attribute, f"{given[attribute]!r} is not one of the listed values")
    occupation = given["occupation"].strip(" .\"'")
    if occupation in ("", "none", "n/a", UNKNOWN):
        values["occupation"] = UNKNOWN
    elif not _stems(occupation) & _stems(persona):
        drop("occupation", f"{occupation!r} is not in the persona")
    else:
        values["occupation"] = occupation
    if values["age_band"] != UNKNOWN:
        allowed = stated_age_bands(persona)
        if not allowed:
            drop("age_band", "the persona states no age or life stage")
        elif values["age_band"] not in allowed:
            drop("age_band", f"the persona's words allow {' or '.join(allowed)}, not {values['age_band']}")
    return values, why


def parse_attributes(raw: str | None, persona: str, domains: list[str]) -> tuple[dict | None, str | None]:
    """The checked values and corrections from a model answer, or ``(None, reason)``."""
    if raw is None or not raw.strip():
        return None, "empty"
    found = _JSON.search(raw)
    if found is None:
        return None, "not_json"
    try:
        answer = json.loads(found.group(0), strict=False)  # a raw newline inside a string: small models
        if not isinstance(answer, dict):
            return None, "not_json"
        values, why = check_attributes(answer, persona, domains)
    except (json.JSONDecodeError, ValidationError):
        return None, "not_json"
    return {**values, "corrected": json.dumps(why, sort_keys=True) if why else None}, None


def extract_attributes(
    personas: pl.DataFrame,
    gateway: LLMGateway,
    template: PromptTemplate,
    *,
    partition: str,
    stage: str = "persona_attributes",
    progress: Progress | None = None,
) -> StageOutput:
    """A ``persona_attributes`` row per persona (``persona_id``, ``persona``, ``source_text_id``,
    ``locale``, ``language`` are carried over), without cluster columns: those are the hub's."""
    domains = [str(d).lower() for d in template.extras.get("domains", [])]
    if not domains:
        raise ValueError(f"{template.source or template.name}: a persona attributes template lists 'domains'")
    carried = ["persona_id", "persona", "source_text_id", "locale", "language"]
    for column in carried:
        if column not in personas.columns:
            personas = personas.with_columns(pl.lit(None, pl.Utf8).alias(column))
    base = {
        "model": gateway.config.model,
        "prompt_hash": template.template_hash,
        "created_at": now_utc(),
        "partition": partition,
    }

    def requests() -> Iterator[LLMRequest]:
        for row in personas.select(carried).iter_rows(named=True):
            messages = template.render(persona=row["persona"], domains=domains)
            yield LLMRequest(row["persona_id"], messages, dict(template.params), context=row)

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        values, reason = parse_attributes(res.content, request.context["persona"], domains)
        if values is None:
            return None, reason
        return {**request.context, **values, **base, "request_hash": res.request_hash}, None

    return run_stage(gateway, requests(), parse, stage=stage, progress=progress).output(
        "persona_attributes", stage, partition
    )


def label_clusters(
    representatives: list[list[str]], gateway: LLMGateway, template: PromptTemplate
) -> list[str]:
    """A short label for each cluster from its nearest personas; ``cluster <n>`` where the model gave
    none that reads as a label (empty, or longer than eight words)."""
    requests = [
        LLMRequest(str(i), template.render(personas=texts), dict(template.params), context=i)
        for i, texts in enumerate(representatives)
    ]
    labels = [f"cluster {i}" for i in range(len(representatives))]

    def parse(request: LLMRequest, res: LLMResult) -> Parsed:
        lines = [x for x in (res.content or "").splitlines() if x.strip()]
        label = _LABEL_PREAMBLE.sub("", lines[0]).strip(" \"'*.-:") if lines else ""
        if not label or len(label.split()) > 8:
            return None, "not_a_label"
        labels[request.context] = label[:80]
        return {}, None

    run_stage(gateway, requests, parse, stage="cluster_labels")
    return labels


TARGETABLE = (
    "domain",
    "occupation",
    "expertise_level",
    "age_band",
    "language",
    "cluster_id",
    "cluster_label",
)


def with_attributes(
    lake: Lake, hub: pl.DataFrame, target: Mapping[str, object], days: list[str]
) -> pl.DataFrame:
    """The hub's rows joined to their ``persona_attributes`` of the same days when ``target`` names
    one of those (a persona without attributes yet counts as ``unknown``); ValueError when the
    attributes of those days were never made."""
    wanted = [c for c in TARGETABLE if c in target]
    if not wanted:
        return hub
    attributes = lake.read("persona_attributes", partitions=days)
    if attributes.is_empty():
        raise ValueError(
            f"target_mix names persona attributes ({', '.join(wanted)}) but persona_attributes has no rows "
            f"for {', '.join(days)}: materialize persona_attributes for those days first"
        )
    joined = hub.join(attributes.select("persona_id", *wanted), on="persona_id", how="left")
    return joined.with_columns(pl.col(c).cast(pl.Utf8).fill_null(UNKNOWN) for c in wanted)
