"""The committed question sets stay usable: the development set (testing/goldensets/django-docs-dev.jsonl,
tuned on) and the confirmation set (django-docs-confirm.jsonl, written afterwards by another hand and never
tuned on) import, have enough distinct questions over the benchmark corpus's folders, no question twice
across the two, and are written as users ask (no code: no function names, dotted paths or snake_case)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.quality import parse_jsonl

SETS = Path(__file__).resolve().parents[2] / "testing" / "goldensets"
SIZES = {"django-docs-dev.jsonl": 150, "django-docs-confirm.jsonl": 100}
# Names users type or read on the box (manage.py, mod_wsgi) are not code they would not know.
CODE = re.compile(r"\w\(|`|\b(?!mod_wsgi\b)[a-z]+_[a-z_]+\b|\b(?!manage\.py\b)[a-z]\w+\.[a-z]\w+\b")


@pytest.mark.parametrize(("name", "size"), SIZES.items())
def test_the_set_imports_with_enough_distinct_user_questions(name, size):
    lines = (SETS / name).read_text(encoding="utf-8").splitlines()
    items = parse_jsonl(lines)
    assert len(items) >= size
    assert len({query.lower() for query, _ in items}) == len(items), "each question once"
    assert all(json.loads(line).keys() == {"query", "expected"} for line in lines)


@pytest.mark.parametrize("name", SIZES)
def test_each_question_names_a_page_of_the_corpus_folders_and_holds_no_code(name):
    for query, expected in parse_jsonl((SETS / name).read_text(encoding="utf-8").splitlines()):
        assert re.fullmatch(r"(topics|howto|intro|faq)/[\w/-]+\.txt", expected), expected
        assert not CODE.search(query), query


def test_no_question_is_in_both_sets():
    asked = [{q.lower() for q, _ in parse_jsonl((SETS / n).read_text(encoding="utf-8").splitlines())} for n in SIZES]
    assert not set.intersection(*asked)
