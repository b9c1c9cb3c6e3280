"""Personal-data scrubbing on the labelled set in tests/fixtures/pii_labelled.jsonl.

Prints recall and precision per kind, and the time scrubbing adds per request next to the time it
takes to render the same request's prompt (the baseline, measured in the same run).

    python benchmarks/pii_scrub.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from personahub_dagster.core.llm.pii import KINDS, evaluate, scrub_messages
from personahub_dagster.core.stages.prompts import load_prompt

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "tests" / "fixtures" / "pii_labelled.jsonl"
SAMPLE = ROOT / "assets" / "corpus" / "sample.jsonl"


def main() -> None:
    items = [(d["text"], [tuple(p) for p in d["pii"]]) for d in map(json.loads, LABELLED.open())]
    tally = evaluate(items)
    print(f"labelled set: {len(items)} texts, {sum(len(p) for _, p in items)} labelled values\n")
    print("| kind | labelled | found | missed | false alarms | recall | precision |")
    print("|---|---|---|---|---|---|---|")
    total = {"tp": 0, "fn": 0, "fp": 0}
    for kind in KINDS:
        t = tally[kind]
        for k in total:
            total[k] += t[k]
        rec = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else float("nan")
        prec = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else float("nan")
        row = [kind, t["tp"] + t["fn"], t["tp"], t["fn"], t["fp"], f"{rec:.3f}", f"{prec:.3f}"]
        print("| " + " | ".join(map(str, row)) + " |")
    t = total
    print(
        f"| all | {t['tp'] + t['fn']} | {t['tp']} | {t['fn']} | {t['fp']} | "
        f"{t['tp'] / (t['tp'] + t['fn']):.3f} | {t['tp'] / (t['tp'] + t['fp']):.3f} |"
    )

    # Cost: scrubbing a request next to rendering its Text-to-Persona prompt, the work every request
    # needs anyway (the baseline): typical web text (the sample corpus) and a text dense with
    # personal data (the labelled set run together), 2,000 characters each.
    template = load_prompt("text_to_persona")
    phrases, grains = template.extras["perspectives"], template.extras["granularity"]
    corpus = [json.loads(line)["text"][:2000] for line in SAMPLE.open()]
    dense = [" ".join(text for text, _ in items)[:2000]]
    print("\n| per request (2,000 characters) | render (baseline) ms | render + scrub ms | ratio |")
    print("|---|---|---|---|")
    for name, docs in (("sample corpus", corpus), ("dense personal data", dense * len(corpus))):
        prompts = [
            template.render(
                text=d,
                perspective="read",
                perspective_phrase=phrases["read"],
                granularity_instruction=grains["fine"],
            )
            for d in docs
        ]
        start = time.perf_counter()
        for d in docs:
            template.render(
                text=d,
                perspective="read",
                perspective_phrase=phrases["read"],
                granularity_instruction=grains["fine"],
            )
        base = (time.perf_counter() - start) / len(docs)
        start = time.perf_counter()
        for p in prompts:
            scrub_messages(p)
        scrub = (time.perf_counter() - start) / len(docs)
        print(f"| {name} | {base * 1e3:.3f} | {(base + scrub) * 1e3:.3f} | {(base + scrub) / base:.2f} |")


if __name__ == "__main__":
    main()
