"""The committed development set (testing/goldensets/django-docs-dev.jsonl) stays usable: it
imports, has at least 150 distinct questions over the benchmark corpus's folders, and its
questions are written as users ask (no code: no function names, dotted paths or snake_case)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.quality import parse_jsonl

DEV_SET = Path(__file__).resolve().parents[2] / "testing" / "goldensets" / "django-docs-dev.jsonl"
# Names users type or read on the box (manage.py, mod_wsgi) are not code they would not know.
CODE = re.compile(r"\w\(|`|\b(?!mod_wsgi\b)[a-z]+_[a-z_]+\b|\b(?!manage\.py\b)[a-z]\w+\.[a-z]\w+\b")


def test_the_development_set_imports_with_150_distinct_user_questions():
    lines = DEV_SET.read_text(encoding="utf-8").splitlines()
    items = parse_jsonl(lines)
    assert len(items) >= 150
    assert len({query.lower() for query, _ in items}) == len(items), "each question once"
    assert all(json.loads(line).keys() == {"query", "expected"} for line in lines)


def test_each_question_names_a_page_of_the_corpus_folders_and_holds_no_code():
    for query, expected in parse_jsonl(DEV_SET.read_text(encoding="utf-8").splitlines()):
        assert re.fullmatch(r"(topics|howto|intro|faq)/[\w/-]+\.txt", expected), expected
        assert not CODE.search(query), query
